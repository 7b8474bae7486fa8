"""plait.sgc: sequential gradient coding (GC, SR-SGC, M-SGC) on a virtual clock and on Ray."""
