"""Stages: notebook cells that define `execute(input)`, run as their own process."""

from .envelope import StageError
from .languages import LANGUAGES, find_language
from .result import StageResult
from .stage import Stage, encode_input

__all__ = ["LANGUAGES", "Stage", "StageError", "StageResult", "encode_input", "find_language"]
