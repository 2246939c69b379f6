"""Datasets and datapoints: their records in the data plane's database, JSONL/CSV import and
export, and their HTTP routes (HoneyHive ``/v1/datasets``, ``/v1/datapoints``)."""
