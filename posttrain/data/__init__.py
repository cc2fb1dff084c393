"""Data loading and validation: JSONL, Parquet and `datasets` directories -> typed records with file:line:field errors."""

from posttrain.data.errors import DataError
from posttrain.data.loaders import LoadResult, load_records
from posttrain.data.schema import SCHEMAS, parse_record

__all__ = ["SCHEMAS", "DataError", "LoadResult", "load_records", "parse_record"]
