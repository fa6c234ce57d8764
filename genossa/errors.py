"""Errors a user can act on.

Every error caused by the user's input (files, records, config keys) is a GenossaError whose
message is one line naming the file and the record; the CLI prints it without a traceback and
exits non-zero. Anything else escaping to the CLI is a bug in genossa.
"""


class GenossaError(Exception):
    """An error in the user's input or environment, reported as one line."""


class InputFormatError(GenossaError):
    """A malformed input file (FASTA, BAM, BED, VCF): names the file, record and position."""


class ConfigError(GenossaError):
    """A bad configuration: unknown key, wrong type or out-of-range value (names key and file)."""
