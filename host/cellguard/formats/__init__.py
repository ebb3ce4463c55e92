"""Writing a log out in other formats: CSV and Parquet (``export``)."""
