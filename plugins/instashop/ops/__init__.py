"""Operations: supervision of the pipeline's jobs, consumer lag, Airflow connections and REST client."""
