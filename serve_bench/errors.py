"""Every error serve-bench raises on purpose.

    ServeBenchError                 exit 1; the root: the CLI prints its message, no traceback
    ├── ConfigError                 exit 2; a bad flag, study or profile field
    ├── ModelError                  exit 3; a model that cannot be resolved or read
    │   ├── ModelNotFoundError      missing path, unknown hub id, hub unreachable
    │   ├── NotACheckpointError     a directory without config.json / safetensors weights
    │   └── UnsupportedModelError   an architecture the pruner cannot handle (MoE, fused MLP…)
    ├── PruneError                  exit 4; planning or writing a pruned checkpoint
    │   ├── OutputExistsError       the output directory is there and --overwrite was not given
    │   └── DiskFullError           the disk filled while writing
    ├── ServerError                 exit 5; the vLLM server
    │   ├── ServerStartError        it exited or timed out before it was ready
    │   └── ServerDiedError         it died while serving
    ├── LoadError                   exit 6; the load generator
    └── EvalError                   exit 7; accuracy evaluation (data missing, no chat template, the
                                    server stopped answering; finished tasks are kept)

Third-party exceptions are wrapped at the boundary with ``raise ... from err``.
Exit code 130 is used for Ctrl-C; 8 (EXIT_REGRESSION) is not an error: ``serve-bench compare
--max-regression`` found a figure significantly worse than the gate allows; nor is 9 (EXIT_PLAN_FAILED):
``serve-bench validate`` found that a capacity plan does not hold on the fleet it asked for.
"""

from __future__ import annotations


class ServeBenchError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(ServeBenchError):
    exit_code = 2


class ModelError(ServeBenchError):
    exit_code = 3


class ModelNotFoundError(ModelError):
    pass


class NotACheckpointError(ModelError):
    pass


class UnsupportedModelError(ModelError):
    pass


class PruneError(ServeBenchError):
    exit_code = 4


class OutputExistsError(PruneError):
    pass


class DiskFullError(PruneError):
    pass


class ServerError(ServeBenchError):
    exit_code = 5


class ServerStartError(ServerError):
    pass


class ServerDiedError(ServerError):
    pass


class LoadError(ServeBenchError):
    exit_code = 6


class EvalError(ServeBenchError):
    exit_code = 7


EXIT_INTERRUPTED = 130
EXIT_REGRESSION = 8
EXIT_PLAN_FAILED = 9
