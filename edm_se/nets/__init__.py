"""Backbone networks: ``forward(x (B, C_in, F, T) float32, c_noise (B,) float32) -> (B, C_out, F, T)``.

Each net has a ``downsample_factor`` attribute (F and T must be multiples of it) and is configured by a
``conf/net/<name>.yaml`` file (``_target_`` + every architecture parameter):

* :class:`edm_se.nets.small.SmallUNet` (``small``, ``tiny``): CPU-sized U-Net with frequency/time folding.
* :class:`edm_se.nets.ncsnpp.NCSNpp` (``ncsnpp`` 65.6M as SGMSE+, ``ncsnpp_m`` 27.8M NCSN++M).
* :class:`edm_se.nets.adm.ADMUNet` (``adm``, 16.6M).
"""

from edm_se.nets.adm import ADMUNet
from edm_se.nets.ncsnpp import NCSNpp
from edm_se.nets.small import SmallUNet

__all__ = ["ADMUNet", "NCSNpp", "SmallUNet"]
