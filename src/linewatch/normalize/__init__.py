"""Normalisation: vendor payloads in, canonical readings (or rejections with reasons) out."""
