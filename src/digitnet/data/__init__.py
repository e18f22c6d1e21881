"""Data sets, IDX files, downloads and preprocessing."""

from digitnet.data.datasets import DATASET_NAMES, Dataset, load_dataset
from digitnet.data.preprocessing import MinMaxScaler, one_hot, stratified_split

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "MinMaxScaler",
    "load_dataset",
    "one_hot",
    "stratified_split",
]
