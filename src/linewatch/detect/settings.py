"""The anomaly models' settings: what a plant may set in detection.anomaly (configs/plant.yaml).

They live here, beside the models and below the configuration loader: config.py reads them from the
plant's files, the models read them, and neither the models nor this module import config.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AnomalySettings", "MewmaSettings"]


class MewmaSettings(BaseModel):
    """The MEWMA model's knobs; defaults are the ones that reach issue 4's SKAB targets.

    The phase lengths are ``AnomalySettings.warmup_readings`` and ``calibration_readings``, shared
    with the Half-Space Trees model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # λ of the EWMA: weight of the newest reading. Small λ finds small persistent shifts, large λ
    # reacts to large sudden ones; 0.25 is in the range Lowry et al. recommend (0.1-0.3).
    smoothing: float = Field(0.25, gt=0.0, le=1.0)
    # threshold = the T² that a reading exceeds with probability false_alarm_per_reading under the
    # normal scores' distribution (a scaled χ², Box 1954) whose mean and variance are the upper
    # threshold_confidence bounds of their estimates, given how many independent readings they rest on
    # (detect/thresholds.py: a few hundred autocorrelated scores can hold ten), and at least margin x
    # the largest score seen while calibrating. Every threshold_update_readings monitored readings the
    # thresholds are set again from every normal reading so far (0: never), so they tighten as the
    # machine shows its normal. Before: margin 1.25 and the estimates themselves, which gave 135 false
    # alarm episodes in 80 hours of the simulated line without a fault (docs/evaluation.md)
    threshold_margin: float = Field(1.0, ge=1.0)
    false_alarm_per_reading: float = Field(1e-5, gt=0.0, lt=0.5)
    threshold_confidence: float = Field(0.95, ge=0.5, lt=1.0)
    threshold_update_readings: int = Field(300, ge=0)
    # the alarm clears after this many consecutive readings at or below the threshold
    off_delay_readings: int = Field(5, ge=1)
    # how fast the mean follows readings taken while the alarm is off (0 = never). Slow on purpose: at
    # 0.01 per reading the mean kept up with any drift slower than about one scale per 100 readings,
    # so a slow drift was rarely found (synthetic process set, docs/evaluation.md), while a normal
    # that wanders (a NAB-style series) is still followed
    mean_learning_rate: float = Field(0.002, ge=0.0, lt=1.0)
    # also score each reading's own Hotelling T² (the EWMA averages a spike or a one-reading glitch
    # away); its threshold is calibrated like the EWMA's
    shewhart: bool = True
    # weight of the newest reading in the dispersion chart, an EWMA of log(1 + T² / sensors) of each
    # reading (needs ``shewhart``; 0 = off). It rises when the readings spread more than they did while
    # the model learned, as when a sensor gets noisy, freezes while its partners move, or leaves the
    # relation it keeps with the others: changes that keep the readings' average where it was, which the
    # EWMA of the readings averages away. The logarithm keeps one extreme reading (a heavy-tailed
    # vibration sensor) from raising it alone; 0.1 is the usual weight of EWMA dispersion charts
    # (Crowder & Hamilton 1992, MacGregor & Harris 1993)
    dispersion_smoothing: float = Field(0.1, ge=0.0, le=1.0)
    # a sensor whose warm-up readings are mostly a straight trend (the share of their variance a line
    # explains, R², above trend_r2: a machine heating up, a filter fouling) is modelled on its change
    # from one reading to the next: its level says where in the trend the machine is, not whether it is normal
    difference_trending: bool = True
    trend_r2: float = Field(0.5, gt=0.0, lt=1.0)
    # sensors left out of the model (e.g. slow thermal sensors that trend through every run)
    exclude_sensors: tuple[str, ...] = ()


class AnomalySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


    warmup_readings: int = Field(400, ge=50)
    calibration_readings: int = Field(300, ge=50)
    threshold_quantile: float = Field(0.995, gt=0.5, lt=1.0)
    threshold_margin: float = Field(1.05, ge=1.0)
    debounce_k: int = Field(3, ge=1)
    debounce_n: int = Field(5, ge=1)
    clear_after_seconds: float = Field(120.0, gt=0)
    # ... and after at least this many readings in a row under the threshold (one over it, even without
    # the debounce, starts the count again): at a slow cadence (a reading per batch, every few minutes)
    # the first quiet reading already comes after clear_after_seconds; a fault that shows on one reading
    # in seven leaves a given 30 readings all quiet about 1 % of the time
    clear_after_readings: int = Field(30, ge=1)
    # which per-machine model: a multivariate EWMA with Hotelling's T² (detect/mewma.py: persistent
    # shifts, slow drifts, broken correlations, spikes; the default since issue 11, see docs/evaluation.md),
    # or river's Half-Space Trees with a per-sensor deviation (detect/anomaly.py)
    model: Literal["halfspace", "mewma"] = "mewma"
    # every time a machine's model finishes learning, what it learned is stored as a version (with its
    # state, for a rollback); past this many per machine and recipe, the oldest versions' states are
    # dropped (never the one in use), their records kept
    keep_versions: int = Field(20, ge=1)
    # the quality gate: a normal relearned while another was in use (a person's "new normal") first
    # scores this many readings in shadow, raising nothing, and goes live only if it would have raised an
    # alert on at most shadow_max_alarm_share of them and every sensor's normal band is plausible for the
    # catalogue; otherwise the model in use before stays (0: no gate, live at once)
    shadow_readings: int = Field(300, ge=0)
    shadow_max_alarm_share: float = Field(0.02, ge=0.0, le=1.0)
    mewma: MewmaSettings = Field(default_factory=MewmaSettings)  # its knobs when model is mewma

    @model_validator(mode="after")
    def _k_le_n(self) -> "AnomalySettings":
        if self.debounce_k > self.debounce_n:
            raise ValueError(f"debounce_k ({self.debounce_k}) must not exceed debounce_n ({self.debounce_n})")
        return self
