"""Where messages come from: the Kafka consumer loop, the line simulator, file replay."""
