"""Seeded mistakes in the models: the TT layer, the TT-RNN cells, the QRNN, the YouTube-8M baselines
(see tests/robustness/mutations.py; run with `python -m tests.robustness.mutations -k models`)."""

from tests.robustness.mutations import Mutation

GUARDS = "tests/test_guards_models.py"

MUTATIONS = (
    Mutation(
        "TT cores merged in swapped order", "models/tt.py",
        'full = torch.einsum("aMNr,rmns->aMmNns", full, core)',
        'full = torch.einsum("aMNr,rmns->amMnNs", full, core)',
        (GUARDS, "-k", "tt_layer_equals_the_matrix"),
    ),
    Mutation(
        "TT second stage writes the output modes transposed", "models/tt.py",
        'y = torch.einsum("RmJr,mnr->RnJ", z, B)',
        'y = torch.einsum("RmJr,mnr->RJn", z, B)',
        (GUARDS, "-k", "tt_layer_equals_the_matrix"),
    ),
    Mutation(
        "TT inference path (two steps) leaves the output modes of the last two cores swapped", "models/tt.py",
        "return out.view(rows, N_p, n2, n1).transpose(2, 3).reshape(rows, N_p * n1 * n2)",
        "return out.view(rows, N_p, n2, n1).reshape(rows, N_p * n1 * n2)",
        (GUARDS, "-k", "tt_layer_equals_the_matrix"),
    ),
    Mutation(
        "TT inference path (two steps) contracts the last core's rank in the wrong order", "models/tt.py",
        "At = cores[-1][..., 0].permute(2, 0, 1).reshape(n2 * r1, m2)",
        "At = cores[-1][..., 0].permute(2, 0, 1).transpose(0, 1).reshape(n2 * r1, m2)",
        (GUARDS, "-k", "tt_layer_equals_the_matrix"),
    ),
    Mutation(
        "TT inference path (two steps) drops the input shift", "models/tt.py",
        "out = torch.add(ones.mul_(shift), out, alpha=scale)",
        "out = torch.add(ones.mul_(0.0), out, alpha=scale)",
        ("tests/test_tt.py", "-k", "two_steps"),
    ),
    Mutation(
        "checkpoint weights kept in safetensors' unaligned buffers (kernels round differently)", "app/checkpoint.py",
        'model.load_state_dict({k: v.to("cpu", meta_state[k].dtype, copy=True) for k, v in state.items()}, assign=True)',
        'model.load_state_dict({k: v.to("cpu", meta_state[k].dtype) for k, v in state.items()}, assign=True)',
        ("tests/test_models_pixels.py", "-k", "checkpoint_round_trip"),
    ),
    Mutation(
        "TT-GRU update and reset gates swapped", "models/tt_rnn.py",
        "z, r = torch.addmm(gx_t[:, : 2 * H], hd, U_zr).sigmoid_().chunk(2, dim=1)",
        "r, z = torch.addmm(gx_t[:, : 2 * H], hd, U_zr).sigmoid_().chunk(2, dim=1)",
        (GUARDS, "-k", "bundled_demo_model"),
    ),
    Mutation(
        "TT-GRU update gate mixes the other way (torch's z convention)", "models/tt_rnn.py",
        "return (torch.lerp(cand.to(h.dtype), h, z.to(h.dtype)),)",
        "return (torch.lerp(h, cand.to(h.dtype), z.to(h.dtype)),)",
        (GUARDS, "-k", "bundled_demo_model"),
    ),
    Mutation(
        "TT-LSTM input and forget gates swapped", "models/tt_rnn.py",
        "i, f, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H])",
        "f, i, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H])",
        ("tests/test_tt_rnn.py", "-k", "tt_lstm_equals_torch_lstmcell"),
    ),
    Mutation(
        "QRNN backward direction not reversed in time", "models/qrnn.py",
        "outs.append(reverse_padded(directions[1](reverse_padded(h, lengths)), lengths))",
        "outs.append(directions[1](h))",
        (GUARDS, "-k", "backward_direction_runs_backward"),
    ),
    Mutation(
        "QRNN backward direction reversed over the padded length", "models/qrnn.py",
        "outs.append(reverse_padded(directions[1](reverse_padded(h, lengths)), lengths))",
        "outs.append(directions[1](h.flip(0)).flip(0))",
        (GUARDS, "-k", "backward_direction_runs_backward"),
    ),
    Mutation(
        "QRNN last pooling reads the backward channels at the last step", "models/qrnn.py",
        "pooled = torch.where(self.qrnn.backward_channels, h[:, 0], last)",
        "pooled = last",
        (GUARDS, "-k", "last_pooling_takes_backward"),
    ),
    Mutation(
        "QRNN backward channel mask marks the forward half", "models/qrnn.py",
        "one_layer[hidden_size:] = True",
        "one_layer[:hidden_size] = True",
        (GUARDS, "-k", "last_pooling_takes_backward"),
    ),
    Mutation(
        "QRNN zoneout at evaluation scales by p instead of 1 - p", "models/qrnn.py",
        "else gates.new_full((1, 1, 1), 1.0 - self.zoneout).expand(T, B, H)",
        "else gates.new_full((1, 1, 1), self.zoneout).expand(T, B, H)",
        (GUARDS, "-k", "zoneout_at_evaluation"),
    ),
    Mutation(
        "QRNN zoneout in training keeps the update with probability p", "models/qrnn.py",
        "torch.empty(T, B, H, dtype=gates.dtype, device=gates.device).bernoulli_(1.0 - self.zoneout)",
        "torch.empty(T, B, H, dtype=gates.dtype, device=gates.device).bernoulli_(self.zoneout)",
        (GUARDS, "-k", "zoneout_in_training"),
    ),
    Mutation(
        "MoE drops the dummy expert from log(1 - p)", "models/common.py",
        "torch.cat([log_gate[..., M:], log_gate[..., :M] + F.logsigmoid(-e)], dim=-1)",
        "log_gate[..., :M] + F.logsigmoid(-e)",
        ("tests/test_yt8m_baselines.py", "-k", "moe_logits"),
    ),
    Mutation(
        "masked mean divides by the padded length", "models/common.py",
        "return total / lengths.to(x.device, x.dtype).clamp_min(1)[:, None]",
        "return total / T",
        ("tests/test_yt8m_baselines.py", "-k", "masked_mean"),
    ),
    Mutation(
        "context gating returns the gate instead of the gated input", "models/common.py",
        "return x * torch.sigmoid(self.gate(x))",
        "return torch.sigmoid(self.gate(x))",
        ("tests/test_qrnn.py", "-k", "context_gating"),
    ),
    Mutation(
        "bench_qrnn's FLOP bound divides by the hidden size instead of the input size", "scripts/bench_qrnn.py",
        "return 4 * (D + H) / (3 * D)",
        "return 4 * (D + H) / (3 * H)",
        ("tests/test_qrnn.py", "-k", "bench_reads"),
    ),
    Mutation(
        "QRNNPool backward drops the gradient carried across a chunk boundary", "models/qrnn.py",
        "        dc[-1].addcmul_(*carry)  # dc_t += f_{t+1} dc_{t+1} across the chunk boundary",
        "        pass",
        ("tests/test_qrnn.py", "-k", "gradcheck_with_a_zoneout_mask"),
    ),
    Mutation(
        "QRNNPool forward starts every chunk from the initial state", "models/qrnn.py",
        "prev = _pool_chunk(a, None if m is None else m[t0:t1], prev,",
        "prev = _pool_chunk(a, None if m is None else m[t0:t1], c0,",
        ("tests/test_qrnn.py", "-k", "overwrites_only_its_own_gates"),
    ),
    Mutation(
        "oneDNN weight gradient leaves out the last chunk of rows", "models/onednn.py",
        "for i in range(0, len(x), ROWS_PER_CHUNK):",
        "for i in range(0, len(x) - 1, ROWS_PER_CHUNK):",
        ("tests/test_onednn.py", "-k", "matches_float64_linear"),
    ),
    Mutation(
        "QRNN tanh through the sigmoid without doubling the input", "models/qrnn.py",
        "return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)",
        "return x.sigmoid_().mul_(2.0).sub_(1.0)",
        ("tests/test_onednn.py", "-k", "tanh_through_the_sigmoid or float32_layer"),
    ),
    Mutation(
        "QRNNPool ifo backward overwrites i before dz reads it", "models/qrnn.py",
        "        z.mul_(z).neg_().add_(1.0).mul_(dc).mul_(i)  # dL/dz = dc i (1 - z^2), over z\n"
        "        i.addcmul_(i, i, value=-1.0).mul_(w.spare)  # dL/di through the sigmoid, i (1 - i), over i\n",
        "        i.addcmul_(i, i, value=-1.0).mul_(w.spare)  # dL/di through the sigmoid, i (1 - i), over i\n"
        "        z.mul_(z).neg_().add_(1.0).mul_(dc).mul_(i)  # dL/dz = dc i (1 - z^2), over z\n",
        ("tests/test_qrnn.py", "-k", "overwrites_only_its_own_gates"),
    ),
    Mutation(
        "QRNNPool backward overwrites o before dL/dc reads it", "models/qrnn.py",
        "        torch.mul(grad_h, o, out=dc)  # dL/dc from the output\n"
        "        o.addcmul_(o, o, value=-1.0).mul_(grad_h).mul_(c)  # dL/do through the sigmoid, o (1 - o), over o\n",
        "        o.addcmul_(o, o, value=-1.0).mul_(grad_h).mul_(c)  # dL/do through the sigmoid, o (1 - o), over o\n"
        "        torch.mul(grad_h, o, out=dc)  # dL/dc from the output\n",
        ("tests/test_qrnn.py", "-k", "gradcheck_with_a_zoneout_mask"),
    ),
    Mutation(
        "QRNN window taps stacked newest first", "models/qrnn.py",
        "return torch.cat([padded[j : j + T] for j in range(k)], dim=-1)\n",
        "return torch.cat([padded[j : j + T] for j in reversed(range(k))], dim=-1)\n",
        ("tests/test_qrnn.py", "-k", "fused_layer_matches_the_composed_reference"),
    ),
    Mutation(
        "output gating leaves out the gated-off share p (1 - g) of 1 - p'", "models/common.py",
        "log_not_p = torch.logaddexp(F.logsigmoid(-logits), F.logsigmoid(logits) + F.logsigmoid(-a))",
        "log_not_p = F.logsigmoid(-logits)",
        ("tests/test_qrnn.py", "-k", "output_gating"),
    ),
    Mutation(
        "class priors laid out (M, K) on the MoE's experts instead of (K, M)", "models/common.py",
        "head.experts.bias.copy_(torch.logit(q).repeat_interleave(m))", "head.experts.bias.copy_(torch.logit(q).repeat(m))",
        ("tests/test_yt8m_baselines.py", "-k", "class_priors"),
    ),
    Mutation(
        "class priors on the MoE forget that the dummy expert takes a share", "models/common.py",
        "q = (q * (m + 1) / m).clamp(max=0.5)", "q = q.clamp(max=0.5)",
        ("tests/test_yt8m_baselines.py", "-k", "class_priors"),
    ),
)
