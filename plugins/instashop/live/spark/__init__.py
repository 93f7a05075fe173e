"""The live-metrics Spark Structured Streaming app: CDC topics -> windowed metrics in Redis."""
