#!/usr/bin/env python3
"""SAM 3's video tracker as extra ONNX engines of a bundle (issue 28, item 1).

Called by ``export_sam3.py --tracker`` on a ``sam3_video`` checkpoint (a
``Sam3VideoModel``): the detector's three engines are exported as always, the
image encoder gains the tracker's features (the second FPN neck runs on the
same ViT output, so the ViT, three quarters of a frame, runs once), and four
small engines carry the per-object work of ``Sam3TrackerVideoModel``:

| engine | per call | what |
|---|---|---|
| ``tracker_memory_attention`` | N objects x T memory frames x P pointers | past memories and object pointers -> memory-conditioned features of the frame |
| ``tracker_mask_decoder`` | N objects | the SAM mask decoder on conditioned features: masks, object pointer, object score |
| ``tracker_mask_prompt`` | N new objects | a detection's mask as the object's first (conditioning) output: masks, object pointer |
| ``tracker_memory_encoder`` | N objects | a frame's mask -> the object's memory of that frame |

Everything the streaming loop does between these engines (association,
keep-alive, NMS, which memories to pass) is plain bookkeeping; see
docs/video-tracker.md.  Each wrapper below calls the transformers modules
themselves and only re-does, batched over objects, the few lines that
transformers writes for a batch of one object (its multimask selection and
object-pointer broadcast index a batch of N as N x N).

The rotary embedding of the memory attention is already real-valued (cos/sin)
in transformers 5.23 (``apply_rotary_pos_emb_2d``); the complex
``view_as_complex`` form of the original code is not met.  The pairwise
rotation is exported as one MatMul (export_sam3.rotate_pairwise_as_matmul).
"""

from __future__ import annotations

import os
import time

# engine -> (inputs, outputs), in graph order; BUNDLE.md documents them
TRACKER_IMAGE_OUTPUTS = ["tracker_feat_0", "tracker_feat_1", "tracker_feat_2", "tracker_pos_2"]
ENGINES = {
    "tracker_memory_attention": (
        ["tracker_feat_2", "tracker_pos_2", "memory", "memory_offset", "object_pointers", "pointer_offset"],
        ["conditioned_feat"],
    ),
    "tracker_mask_decoder": (
        ["conditioned_feat", "tracker_feat_0", "tracker_feat_1"],
        ["mask_logits", "high_res_mask_logits", "object_pointer", "object_score_logits"],
    ),
    "tracker_mask_prompt": (
        ["mask", "tracker_feat_0", "tracker_feat_1", "tracker_feat_2"],
        ["mask_logits", "high_res_mask_logits", "object_pointer", "object_score_logits"],
    ),
    "tracker_memory_encoder": (
        ["tracker_feat_2", "mask_logits", "object_score_logits", "binarize"],
        ["memory"],
    ),
}
TRACKER_ENGINES = tuple(ENGINES)

NO_OBJ_SCORE = -1024.0  # transformers' NO_OBJ_SCORE: mask logits of an object that is not there


def resize_matrix(n_in: int, n_out: int, antialias: bool):
    """The [n_out, n_in] matrix of 1-D bilinear resampling (align_corners=False),
    read off F.interpolate applied to the unit vectors.  Bilinear resampling, with
    or without antialias, is separable, so ``R_h @ X @ R_w.T`` is F.interpolate
    up to float rounding; in the graph it is two MatMuls, which every backend runs
    (ONNX Resize has antialias only from opset 18, and TensorRT not at all)."""
    import torch
    import torch.nn.functional as F

    # two columns, not one: PyTorch's antialiased kernel mishandles a width-1 input
    # (measured: off by 1.0 on 0/1 masks); with 2 identical columns it is exact
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1).expand(n_in, 1, n_in, 2).contiguous()
    r = F.interpolate(eye, size=(n_out, 2), mode="bilinear", align_corners=False, antialias=antialias)
    return r[:, 0, :, 0].T.contiguous().float()


def _resize(x, rh, rw):
    """x [..., H, W] -> [..., h, w] with the matrices of resize_matrix."""
    return rh @ x @ rw.T


def wrappers(video_model):
    """The torch modules that become the tracker engines (and the video image encoder)."""
    import torch
    import torch.nn.functional as F

    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import get_1d_sine_pe

    vm = video_model
    trk = vm.tracker_model
    cfg = trk.config
    C = trk.hidden_dim
    mem_dim = trk.mem_dim
    h, w = trk.prompt_encoder.image_embedding_size
    M = trk.prompt_encoder.mask_input_size[0]  # low-res mask side (4 h)
    S = trk.image_size
    mem_side = 4 * M  # _encode_new_memory's mask size: mask_input_size * 4
    num_maskmem = trk.num_maskmem
    if C % mem_dim != 0:
        raise RuntimeError(f"tracker hidden size {C} must be a multiple of memory size {mem_dim}")
    # C == mem_dim (the toy video bundle: its tracker neck is the 64-wide toy detector's
    # width): each pointer is one token.  transformers stacks a batch-of-one pointer
    # [1, 1, C] and only reshapes it when it is split (mem_dim < C), so its own streaming
    # code fails there (torch.cat of 4-D pointers with 3-D memories); these engines and
    # the ONNX loop compute what it means (P tokens of C), with splits = 1
    splits = C // mem_dim

    class VideoImageEncoder(torch.nn.Module):
        """The detector's image encoder plus the tracker's features of the same ViT output
        (Sam3VideoModel.get_vision_features_for_tracker, kept NCHW)."""

        def __init__(self):
            super().__init__()
            self.vm = vm

        def forward(self, pixel_values):
            v = self.vm.detector_model.get_vision_features(pixel_values=pixel_values)
            f, p = v.fpn_hidden_states, v.fpn_position_encoding
            hs = v.last_hidden_state
            b = hs.shape[0]
            spatial = hs.view(b, h, w, -1).permute(0, 3, 1, 2)
            tf, tp = self.vm.tracker_neck(spatial)
            md = self.vm.tracker_model.mask_decoder
            return f[0], f[1], f[2], p[2], md.conv_s0(tf[0]), md.conv_s1(tf[1]), tf[2], tp[2]

    class MemoryAttention(torch.nn.Module):
        """_prepare_memory_conditioned_features for N objects with the same number of
        memory frames T and pointers P (the loop groups objects that way; transformers
        runs them one at a time).  memory [N, T, mem_dim, h, w] in the order
        transformers concatenates them (conditioning frames first, then the recent
        frames from the oldest); memory_offset [N, T] their temporal offsets (0 for a
        conditioning frame); object_pointers [N, P, C] with pointer_offset [N, P] the
        frame distances (float)."""

        def __init__(self):
            super().__init__()
            self.trk = trk
            # the memories' spatial position encoding: a constant of the memory size
            pos = trk.memory_encoder.position_encoding((1, mem_dim, h, w), "cpu", torch.float32)
            self.register_buffer("mem_pos", pos.flatten(2).permute(2, 0, 1).contiguous(), persistent=False)  # [HW, 1, mem]

        def forward(self, tracker_feat_2, tracker_pos_2, memory, memory_offset, object_pointers, pointer_offset):
            n, t = memory.shape[0], memory.shape[1]
            p = object_pointers.shape[1]
            hw = h * w
            cur = tracker_feat_2.flatten(2).permute(2, 0, 1).expand(hw, n, C)
            cur_pos = tracker_pos_2.flatten(2).permute(2, 0, 1).expand(hw, n, C)
            # spatial memories: [N, T, mem, h, w] -> [T*HW, N, mem]
            mem = memory.flatten(3).permute(1, 3, 0, 2).reshape(t * hw, n, mem_dim)
            # temporal encoding: transformers indexes memory_temporal_positional_encoding[offset - 1],
            # python's -1 (the last slot) for a conditioning frame (offset 0)
            slot = (memory_offset + (num_maskmem - 1)) % num_maskmem  # [N, T]
            tpe = self.trk.memory_temporal_positional_encoding.reshape(num_maskmem, mem_dim)[slot]  # [N, T, mem]
            mem_pos = self.mem_pos.unsqueeze(0) + tpe.permute(1, 0, 2).unsqueeze(1)  # [T, HW, N, mem]
            mem_pos = mem_pos.reshape(t * hw, n, mem_dim)
            # object pointers: streaming mode normalises by max_object_pointers_in_encoder - 1
            max_diff = float(cfg.max_object_pointers_in_encoder - 1)
            sine = get_1d_sine_pe(pointer_offset / max_diff, dim=C)  # [N, P, C]
            ptr_pos = self.trk.temporal_positional_encoding_projection_layer(sine)  # [N, P, mem]
            ptr = object_pointers.permute(1, 0, 2).reshape(p, n, splits, mem_dim).permute(0, 2, 1, 3)
            ptr = ptr.reshape(p * splits, n, mem_dim)
            ptr_pos = ptr_pos.permute(1, 0, 2).repeat_interleave(splits, dim=0)  # [P*splits, N, mem]
            combined = torch.cat([mem, ptr], dim=0)
            combined_pos = torch.cat([mem_pos, ptr_pos], dim=0)
            out = self.trk.memory_attention(
                current_vision_features=cur,
                current_vision_position_embeddings=cur_pos,
                memory=combined,
                memory_posision_embeddings=combined_pos,
                num_object_pointer_tokens=p * splits,
            )  # [1, N, HW, C]
            return out[0].transpose(1, 2).reshape(n, C, h, w)

    def decode(image_embed, feat0, feat1, dense):
        """_single_frame_forward after the prompt encoder, batched over N objects (no
        point prompts: one padding point; multimask output, best IoU)."""
        n = image_embed.shape[0]
        pe = trk.get_image_wide_positional_embeddings().repeat(n, 1, 1, 1)
        points = torch.zeros(n, 1, 1, 2, dtype=image_embed.dtype)
        labels = -torch.ones(n, 1, 1, dtype=torch.int32)
        sparse, _ = trk.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None, input_masks=None)
        masks, iou, tokens, obj = trk.mask_decoder(
            image_embeddings=image_embed,
            image_positional_embeddings=pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            high_resolution_features=[feat0.expand(n, -1, -1, -1), feat1.expand(n, -1, -1, -1)],
        )  # masks [N, 1, 3, M, M], iou [N, 1, 3], tokens [N, 1, 3, C], obj [N, 1, 1]
        appearing = obj.reshape(n, 1) > 0
        masks = torch.where(appearing.reshape(n, 1, 1, 1, 1), masks, torch.full_like(masks, NO_OBJ_SCORE))
        best = torch.argmax(iou.reshape(n, -1), dim=-1)  # [N]
        idx = best.reshape(n, 1, 1, 1).expand(n, 1, masks.shape[-2], masks.shape[-1])
        low = torch.gather(masks[:, 0], 1, idx)  # [N, 1, M, M]
        high = F.interpolate(low, size=(S, S), mode="bilinear", align_corners=False)
        token = torch.gather(tokens[:, 0], 1, best.reshape(n, 1, 1).expand(n, 1, C))[:, 0]  # [N, C]
        ptr = trk.object_pointer_proj(token)
        lam = appearing.to(ptr.dtype)
        ptr = lam * ptr + (1 - lam) * trk.no_object_pointer
        return low, high, ptr, obj.reshape(n, 1)

    class MaskDecoder(torch.nn.Module):
        """A tracked frame: the conditioned features through the SAM mask decoder."""

        def __init__(self):
            super().__init__()
            self.trk = trk

        def forward(self, conditioned_feat, tracker_feat_0, tracker_feat_1):
            n = conditioned_feat.shape[0]
            dense = self.trk.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, h, w)
            return decode(conditioned_feat, tracker_feat_0, tracker_feat_1, dense)

    class MaskPrompt(torch.nn.Module):
        """_use_mask_as_output: a new object's detection mask (0/1, [N, 1, M, M]) is its
        output on the frame it appears; the SAM decoder, prompted with the mask on the
        raw (not memory-conditioned) features, gives only its object pointer."""

        def __init__(self):
            super().__init__()
            self.trk = trk
            self.register_buffer("up_m_s", resize_matrix(M, S, True), persistent=False)
            self.register_buffer("down_s_m", resize_matrix(S, M, True), persistent=False)
            small = S // 4  # mask_downsample: 4x4 conv, stride 4
            self.register_buffer("up_small_m", resize_matrix(small, M, True), persistent=False)

        def forward(self, mask, tracker_feat_0, tracker_feat_1, tracker_feat_2):
            n = mask.shape[0]
            m = _resize(mask, self.up_m_s, self.up_m_s)  # [N, 1, S, S]
            high = m * 20.0 - 10.0
            low = _resize(high, self.down_s_m, self.down_s_m)
            small = self.trk.mask_downsample(m)
            dense = self.trk.prompt_encoder.mask_embed(_resize(small, self.up_small_m, self.up_small_m))
            pix = tracker_feat_2.expand(n, -1, -1, -1)
            _, _, ptr, _ = decode(pix, tracker_feat_0, tracker_feat_1, dense)
            lam = (mask.flatten(1) > 0).any(dim=1, keepdim=True).to(ptr.dtype)  # [N, 1]
            score = 20.0 * lam - 10.0
            ptr = lam * ptr + (1 - lam) * self.trk.no_object_pointer
            return low, high, ptr, score

    class MemoryEncoder(torch.nn.Module):
        """_encode_new_memory for N objects: mask logits of any square size (the loop
        passes the low-res M x M masks after its heuristics, or the S x S high-res ones
        on frames where new objects are added), up-sampled to the memory size;
        binarize [1] > 0.5 thresholds them (a mask given as input) instead of the
        sigmoid.  The memory is rounded to bfloat16 as transformers stores it."""

        def __init__(self):
            super().__init__()
            self.trk = trk

        def forward(self, tracker_feat_2, mask_logits, object_score_logits, binarize):
            n = mask_logits.shape[0]
            m = F.interpolate(mask_logits, size=(mem_side, mem_side), mode="bilinear", align_corners=False)
            prob = torch.where(binarize.reshape(1, 1, 1, 1) > 0.5, (m > 0).to(m.dtype), torch.sigmoid(m))
            prob = prob * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
            pix = tracker_feat_2.expand(n, -1, -1, -1)
            feats, _ = self.trk.memory_encoder(pix, prob)
            if self.trk.occlusion_spatial_embedding_parameter is not None:
                appearing = (object_score_logits > 0).to(feats.dtype).reshape(n, 1, 1, 1)
                feats = feats + (1 - appearing) * self.trk.occlusion_spatial_embedding_parameter.reshape(1, -1, 1, 1)
            return feats.to(torch.bfloat16).to(torch.float32)

    return {
        "image_encoder": VideoImageEncoder().eval(),
        "tracker_memory_attention": MemoryAttention().eval(),
        "tracker_mask_decoder": MaskDecoder().eval(),
        "tracker_mask_prompt": MaskPrompt().eval(),
        "tracker_memory_encoder": MemoryEncoder().eval(),
    }


def example_inputs(video_model, seed: int = 0):
    """Inputs of every tracker engine (batch 2, 3 memory frames, 4 pointers: distinct
    sizes so that the exporter keeps them symbolic), from a random frame."""
    import torch

    trk = video_model.tracker_model
    g = torch.Generator().manual_seed(seed)
    S = trk.image_size
    C = trk.hidden_dim
    h, w = trk.prompt_encoder.image_embedding_size
    M = trk.prompt_encoder.mask_input_size[0]
    ws = wrappers(video_model)
    with torch.no_grad():
        feats = ws["image_encoder"](torch.randn(1, 3, S, S, generator=g))
    f0, f1, f2, p2 = feats[4:]
    n, t, p = 2, 3, 4
    mask = (torch.randn(n, 1, M, M, generator=g) > 0.3).float()
    with torch.no_grad():
        mem = ws["tracker_memory_encoder"](f2, torch.randn(n, 1, M, M, generator=g) * 4, torch.tensor([[5.0], [-5.0]]),
                                           torch.zeros(1))
    memory = torch.stack([mem] * t, 1) + 0.1 * torch.randn(n, t, *mem.shape[1:], generator=g)
    return {
        "tracker_memory_attention": (f2, p2, memory, torch.tensor([[0, 2, 1], [0, 6, 1]], dtype=torch.int64),
                                     torch.randn(n, p, C, generator=g), torch.tensor([[0.0, 1, 2, 3], [4.0, 1, 2, 3]])),
        "tracker_mask_decoder": (torch.randn(n, C, h, w, generator=g), f0, f1),
        "tracker_mask_prompt": (mask, f0, f1, f2),
        "tracker_memory_encoder": (f2, torch.randn(n, 1, M, M, generator=g) * 4, torch.tensor([[3.0], [-2.0]]),
                                   torch.zeros(1)),
    }


def dynamic_shapes(name: str):
    from torch.export import Dim

    objects = Dim("objects", min=1, max=256)
    if name == "tracker_memory_attention":
        frames = Dim("memory_frames", min=1, max=64)
        ptrs = Dim("pointers", min=1, max=64)
        return {"tracker_feat_2": None, "tracker_pos_2": None, "memory": {0: objects, 1: frames},
                "memory_offset": {0: objects, 1: frames}, "object_pointers": {0: objects, 1: ptrs},
                "pointer_offset": {0: objects, 1: ptrs}}
    if name == "tracker_mask_decoder":
        return {"conditioned_feat": {0: objects}, "tracker_feat_0": None, "tracker_feat_1": None}
    if name == "tracker_mask_prompt":
        return {"mask": {0: objects}, "tracker_feat_0": None, "tracker_feat_1": None, "tracker_feat_2": None}
    if name == "tracker_memory_encoder":
        side = Dim("mask_side", min=2, max=4096)
        return {"tracker_feat_2": None, "mask_logits": {0: objects, 2: side, 3: side},
                "object_score_logits": {0: objects}, "binarize": None}
    raise KeyError(name)


def _name_dims(path: str, input_names, dynamic: dict) -> None:
    """Give the exporter's symbolic dimensions (s0, s1...) the names of our Dims,
    read off the graph inputs, through the whole graph."""
    import onnx

    m = onnx.load(path)
    rename = {}
    by_name = {v.name: v for v in m.graph.input}
    for name in input_names:
        axes = dynamic.get(name) or {}
        dims = by_name[name].type.tensor_type.shape.dim
        for axis, d in axes.items():
            if dims[axis].HasField("dim_param"):
                rename[dims[axis].dim_param] = d.__name__
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in rename:
                d.dim_param = rename[d.dim_param]
    onnx.save(m, path)


def export_tracker(video_model, out_dir: str, log) -> None:
    """Export the four tracker engines into out_dir (the image encoder is exported by
    export_sam3.export_all with the video wrapper)."""
    import torch

    ws = wrappers(video_model)
    ex = example_inputs(video_model)
    for name in TRACKER_ENGINES:
        ins, outs = ENGINES[name]
        path = os.path.join(out_dir, f"{name}.onnx")
        t0 = time.time()
        for q in (path, path + ".data"):
            if os.path.exists(q):
                os.remove(q)
        prog = torch.onnx.export(ws[name], ex[name], input_names=ins, output_names=outs,
                                 dynamic_shapes=dynamic_shapes(name), dynamo=True, optimize=True, verbose=False)
        prog.save(path)
        _name_dims(path, ins, dynamic_shapes(name))
        log(f"exported {name}.onnx ({os.path.getsize(path) / 1e6:.1f} MB) in {time.time() - t0:.0f} s")


def verify_tracker(video_model, out_dir: str, threads: int, tol: float, log, seed: int = 1) -> tuple[bool, dict]:
    """Each tracker engine against its PyTorch wrapper on the same inputs, at two
    object counts (1 and 3) and, for memory attention, other memory/pointer counts.
    Returns (ok, {engine/output: max abs diff})."""
    import numpy as np
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    ws = wrappers(video_model)
    ok = True
    report = {}
    base = example_inputs(video_model, seed)
    g = torch.Generator().manual_seed(seed + 100)

    def variants(name):
        a = base[name]
        if name == "tracker_memory_attention":
            f2, p2, mem, _, ptr, _ = a
            for n, t, p in ((1, 1, 1), (3, 7, 16), (2, 5, 2)):
                memory = mem[:1, :1].expand(n, t, -1, -1, -1) + 0.2 * torch.randn(n, t, *mem.shape[2:], generator=g)
                off = torch.randint(0, 7, (n, t), generator=g)
                yield (f2, p2, memory, off, torch.randn(n, p, ptr.shape[-1], generator=g),
                       torch.randint(0, 16, (n, p), generator=g).float())
        elif name == "tracker_mask_decoder":
            c, f0, f1 = a
            for n in (1, 3):
                yield (torch.randn(n, *c.shape[1:], generator=g) * 2, f0, f1)
        elif name == "tracker_mask_prompt":
            m, f0, f1, f2 = a
            for n in (1, 3):
                mk = (torch.randn(n, 1, *m.shape[2:], generator=g) > 0.5).float()
                if n == 3:
                    mk[1] = 0  # an empty mask: the object is "not there"
                yield (mk, f0, f1, f2)
        else:
            f2, ml, _, _ = a
            side_s = video_model.tracker_model.image_size
            # binarize is checked at the memory's own size (4 M: the resize is the
            # identity); the resize from S (the loop's high-res masks) with the
            # sigmoid. Binarizing after a real resize compares float rounding, not
            # the engine: on the 504 px bench bundle about 2 of 663,552 resized
            # random logits lie within 1e-5 of 0, one flips sign between PyTorch and
            # ONNX Runtime, and that one pixel moves ~1,300 memory values by up to
            # 0.036 (measured; both other variants pass there)
            side_mem = 4 * ml.shape[-1]
            for n, side, binar in ((1, ml.shape[-1], 0.0), (3, ml.shape[-1], 0.0), (2, side_s, 0.0),
                                   (2, side_mem, 1.0)):
                yield (f2, torch.randn(n, 1, side, side, generator=g) * 5, torch.randn(n, 1, generator=g) * 5,
                       torch.full((1,), binar))

    for name in TRACKER_ENGINES:
        sess = ort.InferenceSession(os.path.join(out_dir, f"{name}.onnx"), so, providers=["CPUExecutionProvider"])
        ins, outs = ENGINES[name]
        for args in variants(name):
            with torch.no_grad():
                ref = ws[name](*args)
            ref = ref if isinstance(ref, tuple) else (ref,)
            got = sess.run(None, {k: np.ascontiguousarray(v.numpy()) for k, v in zip(ins, args)})
            for o, r, x in zip(outs, ref, got):
                r = r.numpy()
                if r.shape != x.shape:
                    log(f"  {name}.{o}: SHAPE torch {r.shape} onnx {x.shape}")
                    ok = False
                    continue
                d = float(np.max(np.abs(r.astype(np.float64) - x))) if r.size else 0.0
                scale = max(1.0, float(np.max(np.abs(r))))
                bad = np.abs(r.astype(np.float64) - x) > tol * scale
                if o == "memory":
                    # stored in bfloat16: where fp32 noise crosses a rounding boundary the two
                    # differ by one bf16 step (2^-8 of the value); allow exactly that
                    bad &= np.abs(r.astype(np.float64) - x) > np.abs(r) * 2.0 ** -7 * 1.01
                key = f"{name}.{o}"
                report[key] = max(report.get(key, 0.0), d)
                if bad.any():
                    ok = False
                    log(f"  {key} (batch {args[2].shape[:2] if name == 'tracker_memory_attention' else args[1 if name == 'tracker_memory_encoder' else 0].shape[0]}): "
                        f"max|diff| {d:.3e} > {tol:g} * {scale:.3g}  FAIL")
    for k, v in report.items():
        log(f"  {k:52s} max|onnx - torch| {v:.3e}")
    return ok, report


def load_video_model(ckpt_dir: str):
    import torch
    from transformers import Sam3VideoModel

    model = Sam3VideoModel.from_pretrained(ckpt_dir, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    return model


def tracker_table(video_model) -> dict:
    """bundle.toml's [tracker]: the numbers the streaming loop needs (BUNDLE.md)."""
    vm = video_model
    trk = vm.tracker_model
    c = vm.config
    tc = trk.config
    h, w = trk.prompt_encoder.image_embedding_size
    return {
        # the model
        "hidden_size": int(trk.hidden_dim),
        "memory_dim": int(trk.mem_dim),
        "feature_size": int(h),
        "mask_size": int(trk.prompt_encoder.mask_input_size[0]),
        "num_maskmem": int(tc.num_maskmem),
        "max_cond_frame_num": int(tc.max_cond_frame_num),
        "max_object_pointers": int(tc.max_object_pointers_in_encoder),
        # the loop (Sam3VideoConfig)
        "score_threshold_detection": float(c.score_threshold_detection),
        "det_nms_thresh": float(c.det_nms_thresh),
        "assoc_iou_thresh": float(c.assoc_iou_thresh),
        "trk_assoc_iou_thresh": float(c.trk_assoc_iou_thresh),
        "new_det_thresh": float(c.new_det_thresh),
        "high_conf_thresh": float(c.high_conf_thresh),
        "high_iou_thresh": float(c.high_iou_thresh),
        "recondition_every_nth_frame": int(c.recondition_every_nth_frame),
        "recondition_on_trk_masks": bool(c.recondition_on_trk_masks),
        "init_trk_keep_alive": int(c.init_trk_keep_alive),
        "max_trk_keep_alive": int(c.max_trk_keep_alive),
        "min_trk_keep_alive": int(c.min_trk_keep_alive),
        "decrease_trk_keep_alive_for_empty_masklets": bool(c.decrease_trk_keep_alive_for_empty_masklets),
        "suppress_overlapping_based_on_recent_occlusion_threshold": float(
            c.suppress_overlapping_based_on_recent_occlusion_threshold),
        "fill_hole_area": int(c.fill_hole_area),
        "max_num_objects": int(c.max_num_objects),
    }


def verify_video_image_encoder(video_model, processor, photo, out_dir: str, threads: int, tol: float, log) -> bool:
    """The tracker outputs of the video image encoder against PyTorch on the export's photo."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from PIL import Image

    # the photo comes from the caller (export_sam3.verification_photo) so that
    # this module does not import export_sam3 back
    enc = processor(images=Image.fromarray(photo), return_tensors="pt")
    with torch.no_grad():
        vision = video_model.detector_model.get_vision_features(pixel_values=enc["pixel_values"])
        feats, pos = video_model.get_vision_features_for_tracker(vision)
    h, w = video_model.tracker_model.prompt_encoder.image_embedding_size
    # transformers keeps them flattened (HW, B, C); the bundle keeps NCHW
    ref = [f.permute(1, 2, 0).reshape(1, f.shape[-1], int(f.shape[0] ** 0.5), -1) for f in feats]
    ref.append(pos[-1].permute(1, 2, 0).reshape(1, pos[-1].shape[-1], h, w))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(os.path.join(out_dir, "image_encoder.onnx"), so, providers=["CPUExecutionProvider"])
    got = sess.run(TRACKER_IMAGE_OUTPUTS, {"pixel_values": enc["pixel_values"].numpy()})
    ok = True
    for name, r, x in zip(TRACKER_IMAGE_OUTPUTS, ref, got):
        r = r.numpy()
        d = float(np.max(np.abs(r - x)))
        good = r.shape == x.shape and d <= tol * max(1.0, float(np.max(np.abs(r))))
        ok &= good
        log(f"  image_encoder.{name:40s} max|onnx - torch| {d:.3e}  {'ok' if good else 'FAIL'}")
    return ok
