"""The two groups every network has, by id (the input 0, the output 1), and group ids as text:
the leaf that the network and the modules that check, build and store networks share."""

INPUT = 0
OUTPUT = 1


def ids_text(groups) -> str:
    """Group ids as a comma-separated list, for messages."""
    return ", ".join(map(str, groups))
