"""The expected size and cost of every registered network: the single table a new one must join.

Parameter counts are the study's (Souza 2020, verified against its tables; seed 002 for ``mlp``)
and asserted exactly; MACs are fvcore's count for one image of the network's registered
``input_size`` (3x32x32 for the study's five, on its reference code) with 10 classes, asserted
within ``MACS_TOLERANCE``.
"""

from __future__ import annotations

from typing import NamedTuple


class Expected(NamedTuple):
    params_c10: int
    params_c100: int
    macs_c10: float


MACS_TOLERANCE = 0.02

EXPECTED = {
    "squeezenet": Expected(746_638, 792_988, 65.6e6),
    "squeezenet_dsc": Expected(248_670, 295_020, 23.0e6),
    "mobilenet": Expected(3_217_226, 3_309_476, 47.2e6),
    "alexnet": Expected(35_871_562, 36_240_292, 200.5e6),
    "vgg19": Expected(20_040_522, 20_086_692, 398.7e6),
    # 784*128 + 128*10 multiply-accumulates at 1x28x28; 101,770 parameters as seed 002 counts.
    "mlp": Expected(101_770, 113_380, 101_632),
}
