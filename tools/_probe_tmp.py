import torch, traceback
from selector import SelectorConfig, maps, triton_maps
torch.manual_seed(0)
for dtype in (torch.float32, torch.bfloat16):
    for shape in ((16, 27, 27, 1152), (5, 9, 31, 64), (3, 1, 7, 40)):
        x = torch.randn(*shape).to(dtype).cuda()
        for cfg in (SelectorConfig(), SelectorConfig(tau=0.02, window=7, temporal_window=2, past_window=5)):
            ref = maps.entropy_map(maps.normalize(x.float()), cfg)
            try:
                h, g, st = triton_maps.maps_fused(x, cfg, KERNEL="patch", PQR=4, PQC=16, num_warps=8)
                print(dtype, shape, cfg.window, "err", float((h - ref).abs().max()))
            except Exception as e:
                print(dtype, shape, cfg.window, "EXC", type(e).__name__, str(e)[:200])
