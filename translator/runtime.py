"""Process-level CPU tuning applied by the `translator` entry point; it lives in translator.cpu_fastpaths."""
from translator.cpu_fastpaths import (FP32_MMAP_THRESHOLD, FP32_TRIM_THRESHOLD, cpu_bf16_is_fast, limit_primitive_cache,
                                      tune_malloc)

__all__ = ["FP32_MMAP_THRESHOLD", "FP32_TRIM_THRESHOLD", "cpu_bf16_is_fast", "limit_primitive_cache", "tune_malloc"]
