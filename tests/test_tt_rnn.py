"""TT-GRU / TT-LSTM against reference cells (torch's GRUCell / LSTMCell, the Keras GRU formula), the
fused-gate layout, and a learnability check on real encoded videos of a moving bar."""

import time

import av
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from models import create_model
from models.pixels import gal_mask
from models.tt_mlp import sample_frame_indices

TINY = dict(in_modes=(2, 4, 3, 3), hidden_modes=(2, 2, 2, 1), ranks=(1, 2, 3, 2, 1), num_classes=4)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (3, 6, 72), dtype=torch.uint8, generator=g)
    return x, torch.tensor([3, 6, 1])  # not sorted: the model sorts clips by length inside


def _randomize(model):
    with torch.no_grad():  # non-zero biases so a misplaced bias shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def _reference_run(model, x, lengths, step):
    """Per clip, loop over its valid frames with a dense W (from the TT cores) and `step`."""
    W = torch.cat([m.dense_weight() for m in model.input_maps]).double()  # (G*H, D)
    b = torch.cat([m.bias for m in model.input_maps]).double()
    hs = []
    for i, n in enumerate(lengths.tolist()):
        frames = x[i, :n].double() / 255 - 0.5  # (n, D)
        state = None
        for f in frames:
            state = step(f[None] @ W.T + b, state)  # gates from the input, (1, G*H)
        hs.append(state[0] if isinstance(state, tuple) else state)
    h = torch.cat(hs)  # (B, H)
    return h @ model.classifier.weight.double().T + model.classifier.bias.double()


@pytest.mark.parametrize("separate", [False, True])
def test_cudnn_cell_equals_torch_grucell(separate):
    model = _randomize(create_model("tt_gru", cell="cudnn", separate_gates=separate, **TINY)).double()
    H = model.hidden_size
    cell = torch.nn.GRUCell(1, H).double()  # input part comes from the TT map; weight_ih unused
    order = torch.cat(
        [torch.arange(H, 2 * H), torch.arange(H), torch.arange(2 * H, 3 * H)]
    )  # (z,r,h)->(r,z,n)
    with torch.no_grad():
        cell.weight_hh.copy_(model.recurrent_weight.T[order])
        cell.bias_hh.copy_(model.recurrent_bias[order])

    def step(gx, h):
        h = torch.zeros(1, H, dtype=torch.float64) if h is None else h
        gh = h @ cell.weight_hh.T + cell.bias_hh  # torch's GRUCell formula, gates (r, z, n)
        gx = gx[:, order]
        r = torch.sigmoid(gx[:, :H] + gh[:, :H])
        z = torch.sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
        n = torch.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
        return (1 - z) * n + z * h

    x, lengths = _inputs()
    with torch.no_grad():
        ref = _reference_run(model, x, lengths, step)
        torch.testing.assert_close(model(x, lengths), ref)
        # and the formula above really is torch.nn.GRUCell's
        h0, gx = torch.randn(2, H, dtype=torch.float64), torch.randn(2, 3 * H, dtype=torch.float64)
        cell.weight_ih.zero_()
        cell.bias_ih.copy_(gx[0, order])
        torch.testing.assert_close(cell(torch.zeros(1, 1, dtype=torch.float64), h0[:1]), step(gx[:1], h0[:1]))


def test_keras_cell_applies_the_reset_gate_before_the_recurrent_matmul():
    model = _randomize(create_model("tt_gru", cell="keras", **TINY)).double()
    H, U = model.hidden_size, model.recurrent_weight.double()

    def step(gx, h):  # Keras GRU (reset_after=False), as in the paper's TT_GRU.step
        h = torch.zeros(1, H, dtype=torch.float64) if h is None else h
        z = torch.sigmoid(gx[:, :H] + h @ U[:, :H])
        r = torch.sigmoid(gx[:, H : 2 * H] + h @ U[:, H : 2 * H])
        hh = torch.tanh(gx[:, 2 * H :] + (r * h) @ U[:, 2 * H :])
        return z * h + (1 - z) * hh

    x, lengths = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths), _reference_run(model, x, lengths, step))
        cudnn = create_model("tt_gru", cell="cudnn", **TINY).double().eval()
        cudnn.load_state_dict(model.state_dict() | {"recurrent_bias": torch.zeros(3 * H)})
        assert not torch.allclose(cudnn(x, lengths), model(x, lengths))  # the two cells differ


def test_tt_lstm_equals_torch_lstmcell():
    model = _randomize(create_model("tt_lstm", **TINY)).double()
    H = model.hidden_size
    cell = torch.nn.LSTMCell(1, H).double()  # gate order i, f, g, o as ours (Keras i, f, c, o)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.copy_(model.recurrent_weight.T)
        cell.bias_hh.zero_()

    def step(gx, state):
        state = (torch.zeros(1, H, dtype=torch.float64),) * 2 if state is None else state
        with torch.no_grad():
            cell.bias_ih.copy_(gx[0])  # inject the TT gates as the input bias
        return cell(torch.zeros(1, 1, dtype=torch.float64), state)

    x, lengths = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x, lengths), _reference_run(model, x, lengths, step))


@pytest.mark.parametrize("name,cell", [("tt_gru", "keras"), ("tt_gru", "cudnn"), ("tt_lstm", None)])
def test_shrinking_batch_equals_the_masked_loop_with_gradients(name, cell):
    """The recurrence computes only the clips still running at each step (the batch shrinks as clips
    end); the static-shape loop used for export runs every step with masks. Same states, same
    gradients, including the recurrent dropout mask each clip keeps."""
    kw = {} if cell is None else {"cell": cell}
    model = _randomize(create_model(name, **kw, **TINY)).double()
    H, G = model.hidden_size, model.num_gates
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([4, 7, 1, 7, 2])  # unsorted, with a tie
    gx = torch.randn(5, 7, G * H, dtype=torch.float64, generator=g, requires_grad=True)
    mask = (torch.rand(5, H, generator=g, dtype=torch.float64) > 0.3).double() / 0.7

    def shrinking(gx, lengths, mask):  # the packed layout forward() builds from the valid frames
        packed = pack_padded_sequence(gx, lengths, batch_first=True, enforce_sorted=False)
        h = model._run_steps(packed.data.split(packed.batch_sizes.tolist()), mask[packed.sorted_indices])
        return h[packed.unsorted_indices]

    out = {}
    for name, loop in (("shrinking", shrinking), ("masked", model._masked_loop)):
        model.zero_grad()
        gx.grad = None
        h = loop(gx, lengths, mask)
        (h * torch.linspace(-1, 1, H, dtype=torch.float64)).sum().backward()
        out[name] = (h.detach(), gx.grad.clone(), model.recurrent_weight.grad.clone())
    for a, b in zip(out["shrinking"], out["masked"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert out["shrinking"][1][2, 1:].abs().max() == 0  # steps after a clip's end get no gradient


@pytest.mark.parametrize("name,cell", [("tt_gru", "keras"), ("tt_gru", "cudnn"), ("tt_lstm", None)])
def test_clip_stream_gives_each_clip_its_logits_alone(name, cell):
    """Continuous batching (inference): clips join while others are mid-way, leave at their own
    ends, and chunks of steps stop anywhere; each clip's logits are those of the model on that
    clip alone (float64: the rows of a step never mix)."""
    kw = {} if cell is None else {"cell": cell}
    model = _randomize(create_model(name, **kw, **TINY)).double()
    g = torch.Generator().manual_seed(2)
    clips = [torch.randint(0, 256, (n, 72), dtype=torch.uint8, generator=g) for n in (9, 1, 4, 6, 3)]
    with torch.inference_mode():
        alone = [model(c[None], torch.tensor([c.shape[0]]))[0] for c in clips]
        stream, got = model.stream(), {}
        stream.add(0, clips[0])
        got.update(stream.advance(2))  # clip 0 at frame 2
        stream.add(1, clips[1].view(1, 6, 4, 3))  # (T, H, W, 3) frames work too; ends after one step
        stream.add(2, clips[2])
        got.update(stream.advance(1))
        assert list(got) == [1] and len(stream) == 2
        got.update(stream.advance(0))  # no step
        stream.add(3, clips[3])
        got.update(stream.advance(5))  # clip 2 ends inside this chunk, clip 0 at its last frame
        stream.add(4, clips[4])
        got.update(stream.advance())
        assert len(stream) == 0 and stream.advance() == []
    assert sorted(got) == list(range(5))
    for i, ref in enumerate(alone):
        torch.testing.assert_close(got[i], ref, rtol=1e-10, atol=1e-12, msg=f"clip {i}")


def test_clip_stream_refuses_frames_of_another_size_and_training_mode():
    model = create_model("tt_gru", **TINY)
    with pytest.raises(AssertionError, match="inference"):
        model.stream()
    stream = model.eval().stream()
    with pytest.raises(AssertionError, match="do not fit the model"):
        stream.add("x", torch.zeros(3, 71, dtype=torch.uint8))


def test_fused_gate_layout_and_init():
    model = create_model("tt_lstm", **TINY)
    (fused,) = model.input_maps
    assert fused.out_modes == (8, 2, 2, 1) and fused.out_features == 4 * model.hidden_size
    H = model.hidden_size
    assert (
        torch.equal(fused.bias[H : 2 * H], torch.ones(H)) and fused.bias[:H].abs().sum() == 0
    )  # forget bias 1
    u = model.recurrent_weight[:, :H]
    torch.testing.assert_close(u.T @ u, torch.eye(H), atol=1e-5, rtol=0)  # orthogonal gate block
    assert create_model("tt_gru", **TINY).input_maps[0].out_modes == (6, 2, 2, 1)
    sep = create_model("tt_gru", separate_gates=True, **TINY)
    assert len(sep.input_maps) == 3 and sep.input_map_num_params() == 3 * sep.input_maps[0].num_params(
        include_bias=False
    )


def test_dropout_is_active_in_training_only():
    model = create_model("tt_gru", **TINY)
    x, lengths = _inputs()
    model.eval()
    assert torch.equal(model(x, lengths), model(x, lengths))
    model.train()
    torch.manual_seed(0)
    a = model(x, lengths)
    assert not torch.allclose(a, model(x, lengths))
    no_drop = create_model("tt_gru", **(TINY | dict(dropout=0.0, recurrent_dropout=0.0)))
    no_drop.load_state_dict(model.state_dict())
    torch.testing.assert_close(no_drop.train()(x, lengths), no_drop.eval()(x, lengths))


@pytest.mark.parametrize("name", ["tt_gru", "tt_lstm"])
def test_batch_gradients_are_the_sum_of_each_clip_alone(name):
    """Clips of different lengths go through the packed path (valid frames only, reordered by
    length); the batch's gradients must equal the sum of each clip's own, unpadded."""
    model = _randomize(create_model(name, **TINY)).double()
    x, lengths = _inputs()  # lengths [3, 6, 1]

    def grads(xb, lb):
        model.zero_grad()
        (model(xb, lb) * torch.linspace(-1, 2, 4, dtype=torch.float64)).sum().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters()}

    batch = grads(x, lengths)
    alone = [grads(x[i : i + 1, :n], lengths[i : i + 1]) for i, n in enumerate(lengths.tolist())]
    for k, g in batch.items():
        torch.testing.assert_close(g, sum(a[k] for a in alone), rtol=1e-10, atol=1e-12, msg=k)


def test_training_masks_follow_each_clip_through_the_packed_batch():
    """In training, every frame of a clip gets that clip's input-dropout mask and every step its
    recurrent mask (Gal & Ghahramani), also when the clips are reordered by length inside."""
    model = _randomize(create_model("tt_gru", **(TINY | dict(dropout=0.4, recurrent_dropout=0.3)))).double().train()
    H, U = model.hidden_size, model.recurrent_weight
    x, lengths = _inputs()  # lengths [3, 6, 1]: unsorted
    torch.manual_seed(3)
    got = model(x, lengths)
    torch.manual_seed(3)  # the same draws, in the model's order: input mask, then recurrent mask
    in_mask = gal_mask((3, 72), 0.4, U)
    rec_mask = gal_mask((3, H), 0.3, U)
    W = model.input_maps[0].dense_weight().double()  # (3H, D)
    b = model.input_maps[0].bias.double()
    hs = []
    with torch.no_grad():
        for i, n in enumerate(lengths.tolist()):
            h = torch.zeros(1, H, dtype=torch.float64)
            for f in x[i, :n].double() / 255 - 0.5:
                gx = (f * in_mask[i])[None] @ W.T + b
                hd = h * rec_mask[i]
                z = torch.sigmoid(gx[:, :H] + hd @ U[:, :H])
                r = torch.sigmoid(gx[:, H : 2 * H] + hd @ U[:, H : 2 * H])
                h = z * h + (1 - z) * torch.tanh(gx[:, 2 * H :] + (r * hd) @ U[:, 2 * H :])
            hs.append(h)
        ref = model.classifier(torch.cat(hs))
    torch.testing.assert_close(got.detach(), ref)


def test_tt_mlp_samples_frames_evenly_within_the_valid_length():
    idx = sample_frame_indices(torch.tensor([6, 12, 3, 1]), 6)
    assert idx.tolist() == [[0, 1, 2, 3, 4, 5], [1, 3, 5, 7, 9, 11], [0, 0, 1, 1, 2, 2], [0] * 6]


# ------------------------------------------------------------------------------------ learnability
SIZE, FRAMES = 16, 8  # 16x16 RGB frames: 768 = 4 * 4 * 4 * 12 values


def _write_bar_video(path, direction: int, start: int, n: int) -> None:
    """A bright vertical bar moving `direction` (+1 right, -1 left) 2 px per frame, lossless FFV1."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=8)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv444p"
        for t in range(n):
            img = np.full((SIZE, SIZE, 3), 20, np.uint8)
            col = (start + 2 * direction * t) % SIZE
            img[:, col : col + 2] = (250, 220, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _decode(path) -> np.ndarray:
    try:
        from preprocessing import video_to_array
    except ImportError:  # decode with PyAV directly
        with av.open(str(path)) as f:
            return np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)])
    return video_to_array(path, fps=None, size=None)


def test_tt_gru_learns_the_direction_of_a_moving_bar_from_real_videos(tmp_path):
    rng = np.random.default_rng(0)
    clips, labels = [], []
    for i in range(32):
        label = i % 2
        n = int(rng.integers(5, FRAMES + 1))  # variable lengths exercise the padding path
        path = tmp_path / f"bar_{i}.mkv"
        _write_bar_video(path, 1 if label else -1, int(rng.integers(0, SIZE)), n)
        frames = _decode(path)
        assert frames.shape == (n, SIZE, SIZE, 3) and frames.dtype == np.uint8
        clips.append(frames)
        labels.append(label)
    x = torch.zeros(32, FRAMES, SIZE, SIZE, 3, dtype=torch.uint8)
    for i, c in enumerate(clips):
        x[i, : len(c)] = torch.from_numpy(c)
    lengths = torch.tensor([len(c) for c in clips])
    y = torch.tensor(labels)

    torch.manual_seed(0)
    model = create_model(
        "tt_gru",
        num_classes=2,
        in_modes=(4, 4, 4, 12),
        hidden_modes=(2, 2, 2, 4),
        ranks=(1, 4, 4, 4, 1),
        dropout=0.0,
        recurrent_dropout=0.0,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t0 = time.perf_counter()
    for step in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x, lengths), y).backward()
        opt.step()
        with torch.no_grad():
            acc = (model.eval()(x, lengths).argmax(1) == y).float().mean().item()
        model.train()
        steps = step + 1
        if acc >= 0.95:
            break
    assert acc >= 0.9, f"train accuracy {acc:.2f} after {steps} steps, {time.perf_counter() - t0:.1f}s"
