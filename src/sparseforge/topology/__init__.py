"""Which connections exist: patterns, generators, network topologies (numpy only; knows nothing of training)."""

from .generators import FAMILIES, family_out_degrees, random_uniform, register_family, structured, valid_out_degrees
from .network import NetworkTopology, allocate_density, design, fully_connected, nearest_out_degree, resolve_out_degrees
from .pattern import Pattern, TopologyError
from . import analysis, clash_free, expander, radix  # noqa: E402  (importing registers the families)
from .clash_free import design_clash_free, find_clashes, is_clash_free
from .expander import expander as expander_pattern
from .radix import mixed_radix_pattern, radix_net
from .grouped import grouped as grouped_pattern  # registers the family "grouped"
from .block import block as block_pattern  # registers the family "block"

__all__ = [
    "FAMILIES",
    "allocate_density",
    "NetworkTopology",
    "Pattern",
    "TopologyError",
    "design",
    "analysis",
    "block_pattern",
    "clash_free",
    "design_clash_free",
    "find_clashes",
    "is_clash_free",
    "expander_pattern",
    "family_out_degrees",
    "fully_connected",
    "grouped_pattern",
    "mixed_radix_pattern",
    "radix_net",
    "nearest_out_degree",
    "random_uniform",
    "register_family",
    "resolve_out_degrees",
    "structured",
    "valid_out_degrees",
]
