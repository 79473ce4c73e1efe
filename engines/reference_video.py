#!/usr/bin/env python3
"""SAM 3's streaming video loop over a bundle's ONNX engines: the executable spec
for the Rust port (issue 28, item 2).  NumPy, SciPy (connected components) and
ONNX Runtime only; no PyTorch.

    .venv/bin/python engines/reference_video.py [BUNDLE]     # default tests/fixtures/tiny-sam3-video

runs the bundle's golden clip (golden/video.json) and compares every frame with
transformers' own streaming run (``Sam3VideoModel.forward(frame=...)``, written by
make_tiny_sam3_video.py): object ids, scores and tracker scores (within 1e-4),
mask logits, and the post-processed masks (IoU >= 0.99).  Exit code 1 on a
mismatch.

Every rule below is transformers 5.23's (modeling_sam3_video.py,
modeling_sam3_tracker_video.py, processing_sam3_video.py), in the order it runs
them; docs/video-tracker.md describes them in words.  Where transformers does
something surprising it is kept, and said so in a comment: this loop must
reproduce it, not improve it (the memory bounds of issue 28 item 3 come after,
as a deliberate change with its own test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

NO_OBJ_LOGIT = -10.0  # what suppressed masks are set to before memory encoding
NEVER_OCCLUDED = -1


def sigmoid(x):
    x = np.asarray(x, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, H, W] bool x [M, H, W] bool -> [N, M] IoU (union clamped to 1)."""
    a = a.reshape(a.shape[0], -1).astype(np.float32)
    b = b.reshape(b.shape[0], -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return (inter / np.maximum(union, 1.0)).astype(np.float32)


def component_sizes(mask: np.ndarray) -> np.ndarray:
    """Per pixel, the size of its 8-connected component in ``mask`` (0 outside)."""
    import scipy.ndimage as ndi

    lab, _ = ndi.label(mask, structure=np.ones((3, 3), dtype=int))
    sizes = np.bincount(lab.ravel())
    return np.where(lab > 0, sizes[lab], 0)


def fill_holes(masks: np.ndarray, max_area: int) -> np.ndarray:
    """fill_holes_in_mask_scores: background components of at most max_area pixels
    become 0.1 (filled), then foreground components of at most min(max_area, half the
    mask's area) become -0.1 (sprinkles removed).  masks [N, H, W] logits."""
    if max_area <= 0 or masks.shape[0] == 0:
        return masks
    out = masks.copy()
    for i in range(out.shape[0]):
        m = out[i]
        bg = m <= 0
        m = np.where(bg & (component_sizes(bg) <= max_area), np.float32(0.1), m)
        fg = m > 0
        thr = min(int(fg.sum()) // 2, max_area)
        m = np.where(fg & (component_sizes(fg) <= thr), np.float32(-0.1), m)
        out[i] = m
    return out


def nms_masks(probs: np.ndarray, masks: np.ndarray, prob_threshold: float, iou_threshold: float) -> np.ndarray:
    """Greedy mask NMS over the detections above prob_threshold (best first; a later
    one is dropped when its mask IoU with a kept one exceeds iou_threshold)."""
    valid = probs > prob_threshold
    idx = np.nonzero(valid)[0]
    if idx.size == 0:
        return valid
    ious = mask_iou(masks[idx] > 0, masks[idx] > 0)
    order = np.argsort(-probs[idx], kind="stable")
    keep = []
    for i in order:
        if all(ious[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    out = np.zeros_like(valid)
    out[idx[keep]] = True
    return out


class Out:
    """One object's tracker output on one frame (transformers' output dict)."""

    def __init__(self, low, high, ptr, score):
        self.low = low  # [M, M] mask logits (NO_OBJ where the object is not there)
        self.high = high  # [S, S]
        self.ptr = ptr  # [C] object pointer
        self.score = float(score)  # object score logit
        self.memory = None  # [mem, h, w], set by the memory encoder later in the frame


class Obj:
    def __init__(self, obj_id: int, prompt_id: int):
        self.id = obj_id
        self.prompt_id = prompt_id
        self.cond: dict[int, Out] = {}  # conditioning frames, in insertion order
        self.non_cond: dict[int, Out] = {}  # every tracked frame (transformers never drops one)


class VideoLoop:
    def __init__(self, bundle_dir: str, threads: int = 2):
        import onnxruntime as ort

        with open(os.path.join(bundle_dir, "bundle.toml"), "rb") as f:
            self.manifest = tomllib.load(f)
        if "tracker" not in self.manifest:
            raise SystemExit(f"{bundle_dir}/bundle.toml has no [tracker] table: not a video bundle")
        self.t = self.manifest["tracker"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.s = {
            name: ort.InferenceSession(os.path.join(bundle_dir, spec["file"]), so, providers=["CPUExecutionProvider"])
            for name, spec in self.manifest["engines"].items()
        }
        self.prompts = []  # (text_features, attention_mask)
        self.objs: list[Obj] = []
        self.max_obj_id = -1  # Sam3VideoInferenceSession starts at -1: the first object is id 0
        self.obj_score: dict[int, float] = {}  # detection score at creation, never updated
        self.last_occluded: dict[int, int] = {}
        self.keep_alive: dict[int, int] = {}  # kept as transformers does; no effect in streaming mode
        self.frame = 0
        # how often each rule changed something: tells what a golden clip exercises
        self.events: dict[str, int] = {}

    def count(self, event: str, n: int = 1) -> None:
        if n:
            self.events[event] = self.events.get(event, 0) + n

    # ----------------------------------------------------------------- engines

    def add_prompt(self, input_ids, attention_mask):
        ids = np.asarray(input_ids, dtype=np.int64).reshape(1, -1)
        am = np.asarray(attention_mask, dtype=np.int64).reshape(1, -1)
        (tf,) = self.s["text_encoder"].run(None, {"input_ids": ids, "attention_mask": am})
        self.prompts.append((tf, am))

    def propagate(self, f: int, feats: dict, objs: list[Obj]) -> list[Out]:
        """A tracked frame for each object: memory attention over its past, then the
        mask decoder.  Objects with the same number of memory frames and pointers
        run as one batch (transformers runs them one by one)."""
        t = self.t
        entries = []
        for o in objs:
            mem, mem_off, ptr, ptr_off = self.gather(o, f)
            entries.append((o, mem, mem_off, ptr, ptr_off))
        outs: dict[int, Out] = {}
        groups: dict[tuple, list] = {}
        for e in entries:
            groups.setdefault((len(e[1]), len(e[3])), []).append(e)
        for group in groups.values():
            (cond,) = self.s["tracker_memory_attention"].run(None, {
                "tracker_feat_2": feats["tracker_feat_2"], "tracker_pos_2": feats["tracker_pos_2"],
                "memory": np.stack([np.stack(e[1]) for e in group]).astype(np.float32),
                "memory_offset": np.array([e[2] for e in group], dtype=np.int64),
                "object_pointers": np.stack([np.stack(e[3]) for e in group]).astype(np.float32),
                "pointer_offset": np.array([e[4] for e in group], dtype=np.float32),
            })
            low, high, ptr, score = self.s["tracker_mask_decoder"].run(None, {
                "conditioned_feat": cond, "tracker_feat_0": feats["tracker_feat_0"],
                "tracker_feat_1": feats["tracker_feat_1"],
            })
            for i, e in enumerate(group):
                outs[e[0].id] = Out(low[i, 0], high[i, 0], ptr[i], score[i, 0])
        assert t["mask_size"] == low.shape[-1]
        return [outs[o.id] for o in objs]

    def gather(self, o: Obj, f: int):
        """_gather_memory_frame_outputs + _get_object_pointers (streaming, forward)."""
        t = self.t
        num_maskmem, max_cond, max_ptrs = t["num_maskmem"], t["max_cond_frame_num"], t["max_object_pointers"]
        # conditioning frames: all of them, or the max_cond closest (the latest first, then by distance)
        if max_cond == -1 or len(o.cond) <= max_cond:
            selected = dict(o.cond)
            unselected = {}
        else:
            selected = {}
            before = max((k for k in o.cond if k < f), default=None)
            if before is not None:
                selected[before] = o.cond[before]
            after = min((k for k in o.cond if k >= f), default=None)
            if after is not None:
                selected[after] = o.cond[after]
            rest = sorted((k for k in o.cond if k not in selected), key=lambda k: abs(k - f))
            for k in rest[: max_cond - len(selected)]:
                selected[k] = o.cond[k]
            unselected = {k: v for k, v in o.cond.items() if k not in selected}
        mem, mem_off = [], []
        for out in selected.values():
            mem.append(out.memory)
            mem_off.append(0)
        # the num_maskmem - 1 previous frames, oldest first; a frame the object was
        # not tracked on (not yet there) is skipped
        for off in range(num_maskmem - 1, 0, -1):
            out = o.non_cond.get(f - off, unselected.get(f - off))
            if out is not None:
                mem.append(out.memory)
                mem_off.append(off)
        # pointers: EVERY conditioning frame up to now (transformers does not cap these),
        # then the non-conditioning frames of the last max_ptrs - 1 frames
        ptr, ptr_off = [], []
        for k, out in o.cond.items():
            if k <= f:
                ptr.append(out.ptr)
                ptr_off.append(float(f - k))
        for d in range(1, max_ptrs):
            if f - d < 0:
                break
            out = o.non_cond.get(f - d)
            if out is not None:
                ptr.append(out.ptr)
                ptr_off.append(float(d))
        return mem, mem_off, ptr, ptr_off

    def encode_memory(self, feats, masks: np.ndarray, scores: np.ndarray, binarize: bool) -> np.ndarray:
        (mem,) = self.s["tracker_memory_encoder"].run(None, {
            "tracker_feat_2": feats["tracker_feat_2"],
            "mask_logits": np.ascontiguousarray(masks[:, None], dtype=np.float32),
            "object_score_logits": np.asarray(scores, dtype=np.float32).reshape(-1, 1),
            "binarize": np.array([1.0 if binarize else 0.0], dtype=np.float32),
        })
        return mem

    # ----------------------------------------------------------------- one frame

    def detect(self, feats):
        """run_detection + _merge_detections_from_prompts."""
        t = self.t
        masks, scores, pids = [], [], []
        for pid, (tf, am) in enumerate(self.prompts):
            logits, _boxes, pm, presence, _sem = self.s["decoder"].run(None, {
                "fpn_feat_0": feats["fpn_feat_0"], "fpn_feat_1": feats["fpn_feat_1"],
                "fpn_feat_2": feats["fpn_feat_2"], "fpn_pos_2": feats["fpn_pos_2"],
                "text_features": tf, "attention_mask": am,
            })
            probs = sigmoid(logits[0]) * sigmoid(presence[0, 0])
            if t["det_nms_thresh"] > 0:
                keep = nms_masks(probs, pm[0], t["score_threshold_detection"], t["det_nms_thresh"])
                probs = np.where(keep, probs, np.float32(0.0))
            for q in np.nonzero(probs > t["score_threshold_detection"])[0]:
                masks.append(pm[0, q])
                scores.append(float(probs[q]))
                pids.append(pid)
        m = self.t["mask_size"]
        return (np.stack(masks) if masks else np.zeros((0, m, m), np.float32),
                np.array(scores, dtype=np.float32), pids)

    def associate(self, det_masks, det_scores, det_pids, trk_masks):
        """_associate_det_trk."""
        t = self.t
        trk_ids = [o.id for o in self.objs]
        if trk_masks.shape[0] == 0:
            # no tracks yet: EVERY detection is new, new_det_thresh or not
            return list(range(det_masks.shape[0])), [], {}, {}, []
        nonempty = (trk_masks > 0).any(axis=(1, 2))
        if det_masks.shape[0] == 0:
            return ([], [i for i, ne in zip(trk_ids, nonempty) if ne], {}, {},
                    [i for i, ne in zip(trk_ids, nonempty) if not ne])
        ious = mask_iou(det_masks > 0, trk_masks > 0)
        same_prompt = np.array(det_pids)[:, None] == np.array([o.prompt_id for o in self.objs])[None, :]
        ious = np.where(same_prompt, ious, np.float32(0.0))
        trk_matched = (ious >= t["trk_assoc_iou_thresh"]).any(axis=0)
        unmatched = [i for i, ne, mt in zip(trk_ids, nonempty, trk_matched) if ne and not mt]
        empty = [i for i, ne in zip(trk_ids, nonempty) if not ne]
        matches_any = (ious >= t["assoc_iou_thresh"]).any(axis=1)
        is_new = (det_scores >= t["new_det_thresh"]) & ~matches_any
        new = [int(i) for i in np.nonzero(is_new)[0]]
        det_to_trk = {}
        high_conf = {}
        best = ious.argmax(axis=1)
        hc = (det_scores >= t["high_conf_thresh"]) & ~is_new & (ious.max(axis=1) >= t["high_iou_thresh"])
        for d in range(det_masks.shape[0]):
            det_to_trk[d] = [trk_ids[j] for j in np.nonzero(ious[d] >= t["assoc_iou_thresh"])[0]]
            if hc[d]:
                high_conf[trk_ids[int(best[d])]] = d  # a later detection overrides an earlier one
        return new, unmatched, det_to_trk, high_conf, empty

    def suppress_recently_occluded(self, f, masks):
        """_suppress_overlapping_based_on_recent_occlusion (in place, like transformers)."""
        t = self.t
        n = masks.shape[0]
        binary = masks > 0
        last = np.array([self.last_occluded.get(o.id, NEVER_OCCLUDED) for o in self.objs], dtype=np.int64)
        pids = np.array([o.prompt_id for o in self.objs])
        to_suppress = np.zeros(n, dtype=bool)
        for pid in np.unique(pids):
            idx = np.nonzero(pids == pid)[0]
            if idx.size <= 1:
                continue
            iou = mask_iou(binary[idx], binary[idx])
            pairs = np.triu(iou >= t["suppress_overlapping_based_on_recent_occlusion_threshold"], k=1)
            li, lj = last[idx][:, None], last[idx][None, :]
            # as written in transformers: each side's test looks at the OTHER's last occlusion
            sup_i = pairs & (li > lj) & (lj > -1)
            sup_j = pairs & (lj > li) & (li > -1)
            to_suppress[idx] = sup_i.any(axis=1) | sup_j.any(axis=0)
        occluded = ~binary.any(axis=(1, 2))
        new_last = last.copy()
        new_last[occluded | to_suppress] = f
        masks[to_suppress] = NO_OBJ_LOGIT
        self.count("suppressed (recently occluded overlap)", int(to_suppress.sum()))
        self.count("object not there (empty tracked mask)", int(occluded.sum()))
        return {o.id: int(v) for o, v in zip(self.objs, new_last)}

    def area_shrinkage(self, masks):
        """_suppress_object_pw_area_shrinkage per prompt: an object that keeps less than
        30% of its area once every pixel goes to its best object is clamped to -10."""
        out = masks.copy()
        pids = np.array([o.prompt_id for o in self.objs])
        for pid in np.unique(pids):
            idx = np.nonzero(pids == pid)[0]
            if idx.size <= 1:
                continue
            m = masks[idx]
            best = m.argmax(axis=0)
            keep = best[None] == np.arange(idx.size)[:, None, None]
            after = np.where(keep, m, np.minimum(m, NO_OBJ_LOGIT))
            before_area = np.maximum((m > 0).sum(axis=(1, 2)), 1).astype(np.float32)
            ratio = (after > 0).sum(axis=(1, 2)) / before_area
            for k, i in enumerate(idx):
                if not ratio[k] >= 0.3:
                    self.count("clamped (area shrinkage)")
                    out[i] = np.minimum(m[k], NO_OBJ_LOGIT)
        return out

    def step(self, pixel_values: np.ndarray) -> dict:
        """Sam3VideoModel.forward(frame=...) for the next frame."""
        t = self.t
        f = self.frame
        self.frame += 1
        names = [o.name for o in self.s["image_encoder"].get_outputs()]
        feats = dict(zip(names, self.s["image_encoder"].run(None, {"pixel_values": pixel_values})))

        # 1. detection (all prompts), NMS, threshold
        det_masks, det_scores, det_pids = self.detect(feats)

        # 2. every existing object one tracked frame further (memory not encoded yet)
        n_old = len(self.objs)
        if n_old:
            props = self.propagate(f, feats, self.objs)
            for o, out in zip(self.objs, props):
                o.non_cond[f] = out
            trk_raw_scores = np.array([p.score for p in props], dtype=np.float32)
            raw = np.stack([p.low for p in props])
            trk_masks = fill_holes(raw, t["fill_hole_area"])
            self.count("masks changed by hole filling", int((trk_masks != raw).any(axis=(1, 2)).sum()))
        else:
            props = []
            trk_raw_scores = np.zeros(0, np.float32)
            trk_masks = np.zeros((0, t["mask_size"], t["mask_size"]), np.float32)

        # 3. plan: association, object cap, keep-alive, reconditioning
        new, unmatched, det_to_trk, high_conf, empty = self.associate(det_masks, det_scores, det_pids, trk_masks)
        if n_old + len(new) > t["max_num_objects"]:
            self.count("detections dropped by max_num_objects", n_old + len(new) - t["max_num_objects"])
            room = t["max_num_objects"] - n_old
            order = np.argsort(-det_scores[new], kind="stable")[:room]  # torch.topk: best first
            new = [new[i] for i in order]
        new_ids = list(range(self.max_obj_id + 1, self.max_obj_id + 1 + len(new)))
        for oid in new_ids:
            self.keep_alive[oid] = t["init_trk_keep_alive"]
        for oid in {i for ids in det_to_trk.values() for i in ids}:
            self.keep_alive[oid] = min(t["max_trk_keep_alive"], self.keep_alive[oid] + 1)
        for oid in unmatched:
            self.keep_alive[oid] = max(t["min_trk_keep_alive"], self.keep_alive[oid] - 1)
        if t["decrease_trk_keep_alive_for_empty_masklets"]:
            for oid in empty:
                self.keep_alive[oid] = max(t["min_trk_keep_alive"], self.keep_alive[oid] - 1)
        # streaming mode: no hot-start removal, so keep_alive never removes nor hides anything

        recond: dict[int, np.ndarray] = {}  # obj index -> mask for its memory
        if t["recondition_every_nth_frame"] > 0 and f % t["recondition_every_nth_frame"] == 0 and high_conf:
            for oid, d in high_conf.items():
                k = next(i for i, o in enumerate(self.objs) if o.id == oid)
                if trk_raw_scores[k] <= t["high_conf_thresh"]:  # the tracker's object score LOGIT
                    continue
                self.count("reconditioned")
                recond[k] = trk_masks[k] if t["recondition_on_trk_masks"] else (det_masks[d] >= 0.5).astype(np.float32)

        # 4. memories of this frame for the existing objects
        if n_old:
            self.last_occluded = self.suppress_recently_occluded(f, trk_masks)
            mem_masks = trk_masks.copy()
            for k, m in recond.items():
                mem_masks[k] = m
                trk_masks[k] = m  # transformers writes through a view: the output masks see it too
                o = self.objs[k]
                o.cond[f] = o.non_cond.pop(f)  # a reconditioned frame becomes a conditioning frame
            mem_masks = self.area_shrinkage(mem_masks)
            areas = np.where((mem_masks > 0).any(axis=(1, 2)), np.float32(10.0), np.float32(-10.0))
            mem = self.encode_memory(feats, mem_masks, areas, binarize=False)
            for k, o in enumerate(self.objs):
                (o.cond.get(f) or o.non_cond[f]).memory = mem[k]
        else:
            self.last_occluded = {}

        for oid, d in zip(new_ids, new):
            self.obj_score[oid] = float(det_scores[d])
        if new_ids:
            self.max_obj_id = max(self.max_obj_id, max(new_ids))
        tracker_scores = {oid: float(det_scores[d]) for oid, d in zip(new_ids, new)}
        if n_old:
            for o, s in zip(self.objs, sigmoid(trk_raw_scores)):
                tracker_scores[o.id] = float(s)

        # 5. new objects: their detection mask is their first (conditioning) output.
        # transformers then re-runs the tracker on every existing object without a
        # conditioning output here and re-encodes ALL of them from their raw high-res
        # masks, binarized (one flag for the batch): on such frames the memories made in
        # step 4 are replaced, hole filling and suppression are not in them.  The re-run
        # repeats step 2 exactly (same memories), so its outputs are reused here.
        if new:
            self.count("objects created", len(new))
            self.count("frames re-encoding existing objects (binarized)", int(n_old > 0))
            new_masks = (det_masks[new] >= 0.5).astype(np.float32)
            low, high, ptr, score = self.s["tracker_mask_prompt"].run(None, {
                "mask": new_masks[:, None], "tracker_feat_0": feats["tracker_feat_0"],
                "tracker_feat_1": feats["tracker_feat_1"], "tracker_feat_2": feats["tracker_feat_2"],
            })
            new_objs = []
            for i, (oid, d) in enumerate(zip(new_ids, new)):
                o = Obj(oid, det_pids[d])
                o.cond[f] = Out(low[i, 0], high[i, 0], ptr[i], score[i, 0])
                new_objs.append(o)
            again = [o for o in self.objs if f not in o.cond] + new_objs
            mem = self.encode_memory(
                feats, np.stack([(o.cond.get(f) or o.non_cond[f]).high for o in again]),
                np.array([(o.cond.get(f) or o.non_cond[f]).score for o in again]), binarize=True)
            for o, m in zip(again, mem):
                (o.cond.get(f) or o.non_cond[f]).memory = m
            self.objs += new_objs

        # 6. outputs: tracked masks for the existing objects, the detection mask (holes
        # filled) for a new one, the raw detection mask for a reconditioned one
        obj_id_to_mask = {o.id: trk_masks[k] for k, o in enumerate(self.objs[:n_old])}
        if new:
            for oid, m in zip(new_ids, fill_holes(det_masks[new], t["fill_hole_area"])):
                obj_id_to_mask[oid] = m
        for k in recond:
            oid = self.objs[k].id
            obj_id_to_mask[oid] = det_masks[high_conf[oid]]
        return {
            "frame": f,
            "object_ids": [o.id for o in self.objs],
            "obj_id_to_mask": obj_id_to_mask,
            "obj_id_to_score": dict(self.obj_score),
            "obj_id_to_tracker_score": tracker_scores,
        }

    def postprocess(self, out: dict, height: int, width: int):
        """Sam3VideoProcessor.postprocess_outputs: masks at the frame's size, empty
        ones dropped, then each pixel kept by the object with the best tracker score."""
        ids = sorted(out["obj_id_to_mask"])
        if not ids:
            return [], [], np.zeros((0, height, width), bool)
        low = np.stack([out["obj_id_to_mask"][i] for i in ids]).astype(np.float32)
        m = low.shape[-1]
        rh = bilinear_matrix(m, height)
        rw = bilinear_matrix(m, width)
        masks = np.einsum("hm,nmk,wk->nhw", rh, low, rw) > 0
        keep = masks.any(axis=(1, 2))
        ids = [i for i, k in zip(ids, keep) if k]
        masks = masks[keep]
        scores = [out["obj_id_to_score"][i] for i in ids]
        if len(ids) > 1:
            tp = np.array([out["obj_id_to_tracker_score"].get(i, 0.0) for i in ids], dtype=np.float32)
            pid = {o.id: o.prompt_id for o in self.objs}
            pids = np.array([pid[i] for i in ids])
            for p in np.unique(pids):
                idx = np.nonzero(pids == p)[0]
                single = np.where(masks[idx], tp[idx][:, None, None], np.float32(0.0))
                best = single.argmax(axis=0)
                masks[idx] = masks[idx] & (best[None] == np.arange(idx.size)[:, None, None])
        return ids, scores, masks


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """1-D bilinear resampling, align_corners=False (PyTorch's F.interpolate), as a matrix."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), np.float32)
    for o in range(n_out):
        x = max((o + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(x)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        w1 = x - i0
        m[o, i0] += 1 - w1
        m[o, i1] += w1
    return m


def run_golden(bundle: str, threads: int = 2, verbose: bool = True) -> dict:
    from PIL import Image

    gdir = os.path.join(bundle, "golden")
    with open(os.path.join(gdir, "video.json")) as f:
        golden = json.load(f)
    from safetensors.numpy import load_file

    arrays = load_file(os.path.join(gdir, "video.safetensors"))
    loop = VideoLoop(bundle, threads)
    loop.add_prompt(golden["input_ids"], golden["attention_mask"])
    worst = {"score": 0.0, "tracker_score": 0.0, "low_res_mask": 0.0, "mask_iou": 1.0, "mismatches": 0}
    for fr in golden["frames"]:
        f = fr["frame"]
        img = np.asarray(Image.open(os.path.join(gdir, fr["image"])).convert("RGB"))
        pv = ((img / 255.0 - 0.5) / 0.5).astype(np.float32).transpose(2, 0, 1)[None]
        out = loop.step(np.ascontiguousarray(pv))
        ids, scores, masks = loop.postprocess(out, img.shape[0], img.shape[1])
        problems = []
        if out["object_ids"] != fr["object_ids"]:
            problems.append(f"object_ids {out['object_ids']} != {fr['object_ids']}")
        if sorted(out["obj_id_to_mask"]) != fr["mask_ids"]:
            problems.append(f"mask ids {sorted(out['obj_id_to_mask'])} != {fr['mask_ids']}")
        else:
            low_ref = arrays[f"frame{f:02d}_low_res_masks"]
            for k, i in enumerate(fr["mask_ids"]):
                d = float(np.max(np.abs(out["obj_id_to_mask"][i] - low_ref[k])))
                worst["low_res_mask"] = max(worst["low_res_mask"], d)
                ds = abs(out["obj_id_to_score"][i] - fr["scores"][str(i)])
                worst["score"] = max(worst["score"], ds)
                if ds > 1e-4:
                    problems.append(f"score of {i}: {out['obj_id_to_score'][i]} vs {fr['scores'][str(i)]}")
        for i, s in fr["tracker_scores"].items():
            got = out["obj_id_to_tracker_score"].get(int(i))
            if got is None:
                problems.append(f"no tracker score for {i}")
                continue
            worst["tracker_score"] = max(worst["tracker_score"], abs(got - s))
            if abs(got - s) > 1e-4:
                problems.append(f"tracker score of {i}: {got} vs {s}")
        if ids != fr["output_ids"]:
            problems.append(f"output ids {ids} != {fr['output_ids']}")
        else:
            ref = np.unpackbits(arrays[f"frame{f:02d}_masks"], axis=-1)[..., : img.shape[1]].astype(bool)
            for k, i in enumerate(ids):
                inter = (masks[k] & ref[k]).sum()
                union = (masks[k] | ref[k]).sum()
                iou = 1.0 if union == 0 else inter / union
                worst["mask_iou"] = min(worst["mask_iou"], float(iou))
                if iou < 0.99:
                    problems.append(f"mask IoU of {i}: {iou:.4f}")
        worst["mismatches"] += bool(problems)
        if verbose:
            print(f"frame {f:2d}: ids {out['object_ids']} out {ids} "
                  f"{'ok' if not problems else 'MISMATCH: ' + '; '.join(problems)}", flush=True)
    worst["events"] = loop.events
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", default=os.path.join(ROOT, "tests", "fixtures", "tiny-sam3-video"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    worst = run_golden(args.bundle, args.threads)
    print(f"worst: |score diff| {worst['score']:.2e}, |tracker score diff| {worst['tracker_score']:.2e}, "
          f"|low-res mask logit diff| {worst['low_res_mask']:.2e}, min mask IoU {worst['mask_iou']:.4f}, "
          f"frames with a mismatch: {worst['mismatches']}")
    print("rules exercised: " + ", ".join(f"{k} {v}" for k, v in sorted(worst["events"].items())))
    return 1 if worst["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
