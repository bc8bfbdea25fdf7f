"""veRL's multi-turn SFT dataset reading the exact tools of ``codegym export-sft`` files.

:class:`CodeGymSFTDataset` is ``MultiTurnSFTDataset`` except that each row's tools come from its
``tools_json`` column (exact JSON text) instead of the ``tools`` struct column, where parquet fills every
tool with the union of the keys of all the column's JSON Schemas (see :mod:`rl.sft`). Use it in veRL's SFT
trainer with ``data.custom_cls.path=pkg://rl.sft_dataset data.custom_cls.name=CodeGymSFTDataset``.
"""

from __future__ import annotations

import json

from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

__all__ = ["CodeGymSFTDataset"]


class CodeGymSFTDataset(MultiTurnSFTDataset):
    """``MultiTurnSFTDataset`` with the tools read from ``tools_json`` (rows without it keep ``tools``)."""

    def _read_files_and_process(self) -> None:
        super()._read_files_and_process()
        if "tools_json" in self.dataframe.columns:
            self.tools = [json.loads(text) if isinstance(text, str) and text else None
                          for text in self.dataframe["tools_json"].tolist()]
