"""chatbot_encdec tuned on a dev split carved out of the training conversations only.

The held-out test conversations of the chatterbot English corpus (split_conversations,
10%) are never read: the training conversations are split again the same way (10%,
seed 1) into train' and dev, written as YAML, and the preset (with --set overrides) is
trained on train' and scored on dev: reply perplexity, BLEU/chrF (sacrebleu, the task's
scorer) of greedy and beam replies under several decoding settings, beside retrieval and
the echo on the same dev replies, and how much they parrot the message
(workbench.tasks.parroting). Usage:
    python bench/chatbot_dev.py --set data.options.min_freq=2 [--set ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def dev_files(out: Path, dev_seed: int = 1) -> tuple[Path, Path]:
    import yaml
    from quality import _shared

    from workbench.io.dialogue import read_dialogue
    from workbench.tasks.dialogue import split_conversations

    read = read_dialogue(_shared("dialogue", "chatterbot-english")).conversations
    train, _test = split_conversations(read, 0.1)  # the test split: never read below
    train2, dev = split_conversations(train, 0.1, seed=dev_seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.yml", out / "dev.yml"
    for path, convs in zip(paths, (train2, dev)):
        path.write_text(yaml.safe_dump({"categories": ["dev"], "conversations": convs}, allow_unicode=True))
    return paths


def main() -> None:
    from quality import _seq2seq_scores, train_preset

    from workbench import presets
    from workbench.spec import with_overrides

    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--dir", default="/tmp/chatbot_dev")
    parser.add_argument("--decode", action="append", default=[],
                        help="extra decoding settings 'no_repeat,length_penalty,min_length,no_unk' to score")
    parser.add_argument("--mbr", action="append", type=int, default=[],
                        help="also score minimum Bayes risk decoding over this many samples (repeatable)")
    parser.add_argument("--mbr-temperature", action="append", type=float, default=[],
                        help="the sampling temperatures MBR is scored at (repeatable; default 1)")
    parser.add_argument("--mbr-beta", action="append", type=float, default=[],
                        help="the chrF beta of MBR's utility (repeatable; default 1)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed")
    parser.add_argument("--dev-seed", type=int, default=1,
                        help="the seed of the train'/dev split of the training conversations (default 1)")
    parser.add_argument("--save-pools", default="", metavar="FILE.json",
                        help="with --rerank: write the scored pools, the dev messages and replies here (for --sweep)")
    parser.add_argument("--sweep", nargs="+", default=[], metavar="FILE.json",
                        help="no training: the rerank grid over the pools of these --save-pools files together")
    parser.add_argument("--parroting-only", action="store_true",
                        help="with --sweep: only the overlap penalty's grid and the parroting measures")
    parser.add_argument("--rerank", type=int, default=0, metavar="K",
                        help="also score retrieve-then-rerank (workbench.tasks.rerank) over the beam reply and "
                        "the K nearest questions' replies, on a grid of its weights")
    args = parser.parse_args()
    if args.sweep:
        return sweep_files(args.sweep, args.parroting_only)
    train, dev = dev_files(Path(args.dir), args.dev_seed)
    preset = with_overrides(presets.load_builtin("chatbot_encdec"),
                            [f"data.path={train}", f"data.options.val_path={dev}", "train.num_threads=1"] + args.set)
    task, model, seconds, _ = train_preset(preset, seed=args.seed)
    model.cpu().eval()
    print(f"trained {preset.train.steps} steps in {seconds / 60:.1f} min; {len(task.train_texts)} train', "
          f"{len(task.val_pairs)} dev exchanges; vocab {len(task.source_vocab)}", flush=True)
    o = task.options
    settings = [(o.no_repeat_ngram, o.length_penalty, o.min_length, o.no_unk)]
    settings += [tuple(map(float, d.split(","))) for d in args.decode]
    for i, (nr, lp, ml, nu) in enumerate(settings):
        o.no_repeat_ngram, o.length_penalty, o.min_length, o.no_unk = int(nr), lp, int(ml), bool(nu)
        started = time.perf_counter()
        m, base, _ = _seq2seq_scores(task, model, 4)
        if i == 0:
            print(f"dev perplexity {m['perplexity']:.1f} (unigram {task.baseline()['perplexity']:.1f}); "
                  f"retrieval BLEU {base['retrieval_bleu']:.2f} chrF {base['retrieval_chrf']:.2f}; "
                  f"echo BLEU {base['echo_bleu']:.2f} chrF {base['echo_chrf']:.2f} len {base['echo_length_ratio']:.2f}")
        print(f"no_repeat {int(nr)} lp {lp:g} min_length {int(ml)} no_unk {bool(nu)}: greedy BLEU {m['bleu']:.2f} chrF {m['chrf']:.2f} "
              f"len {m['length_ratio']:.2f} | beam BLEU {m['bleu_beam']:.2f} chrF {m['chrf_beam']:.2f} "
              f"len {m['length_ratio_beam']:.2f} ({time.perf_counter() - started:.0f} s)", flush=True)
    o.no_repeat_ngram, o.length_penalty, o.min_length, o.no_unk = settings[0]  # examples: the preset's decoding
    from workbench.tasks.transduction import text_scores

    refs = [task._as_compared(r) for _, r in task.val_texts]
    for samples, temperature, beta in [(n, t, b) for n in args.mbr for t in args.mbr_temperature or [1.0]
                                       for b in args.mbr_beta or [1.0]]:
        started = time.perf_counter()
        outs = []
        for b in range(0, len(task.val_pairs), 64):
            batch = task._batch(task.val_pairs[b:b + 64])
            sources = [m for m, _ in task.val_texts[b:b + 64]]
            tokens, _ = task.mbr_decode(model, batch.x, batch.lengths, sources, samples,
                                        int(batch.y.shape[1]) * 2 + 10, temperature, seed=b, beta=beta)
            outs += [task.decode_target(row, sources[i]) for i, row in enumerate(tokens.tolist())]
        m = text_scores(outs, refs)
        print(f"MBR over {samples} samples at temperature {temperature:g}, chrF beta {beta:g}: BLEU {m['bleu']:.2f} chrF {m['chrf']:.2f} "
              f"len {m['length_ratio']:.2f} ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.rerank:
        rerank_grid(task, model, args.rerank, refs, args.save_pools)
    from workbench.tasks.parroting import parroting_scores

    messages = [task._as_compared(m) for m in (task.val_messages or [m for m, _ in task.val_texts])]  # as read
    outs = task.decode_outputs(model, "cpu", 64, len(messages), 4)
    for name, replies in (("beam 4", outs), ("references", refs), ("echo", messages)):
        p = parroting_scores(replies, messages)
        print(f"parroting of {name}: {p['parrot_share']:.1%} parrot, {p['repeat_share']:.1%} repeat a word "
              f"(mean overlap {p['overlap']:.2f})")
    outs = task.decode_outputs(model, "cpu", 64, 40)
    for (message, reply), out in list(zip(task.val_texts[:40], outs))[::3]:
        print(f"  {message} -> {out}  [ref: {reply[:80]}]")


def rerank_grid(task, model, k_max: int, refs: list[str], save: str = "") -> None:
    """Retrieve-then-rerank on dev: the pools once (beam 4, the k_max nearest
    questions' replies, each scored by the model), then the choice under a grid of the
    weights, the pool's size and make-up; BLEU/chrF of each beside retrieval's."""
    import dataclasses
    import json

    from workbench.tasks.rerank import candidate_pools

    started = time.perf_counter()
    index = task.retrieval_index()
    messages = [task._as_compared(m) for m in (task.val_messages or [m for m, _ in task.val_texts])]  # as read
    pools = candidate_pools(task, model, [m for m, _ in task.val_texts], index, k_max, 4, prior=True)
    print(f"rerank pools (beam 4, {k_max} retrieved) scored in {time.perf_counter() - started:.0f} s", flush=True)
    if save:
        Path(save).write_text(json.dumps({"refs": refs, "messages": messages,
                                          "pools": [[dataclasses.asdict(c) for c in p] for p in pools]}))
    sweep(pools, refs, k_max)
    parroting_grid(pools, refs, messages)


def sweep_files(files: list[str], parroting_only: bool = False) -> None:
    import json

    from workbench.tasks.parroting import overlap
    from workbench.tasks.rerank import Candidate

    pools, refs, messages = [], [], []
    for f in files:
        data = json.loads(Path(f).read_text())
        pools += [[Candidate(**c) for c in p] for p in data["pools"]]
        refs += data["refs"]
        messages += data.get("messages", [""] * len(data["refs"]))  # older files hold no messages
    for pool, message in zip(pools, messages):
        for c in pool:
            c.overlap = overlap(c.text, message)  # (older files hold none)
    print(f"rerank sweep over {len(files)} dev runs, {len(refs)} dev exchanges")
    if not parroting_only:
        sweep(pools, refs, max(int(c.origin.split("#")[1]) for p in pools for c in p if c.retrieved))
    if all(messages):
        parroting_grid(pools, refs, messages)


def sweep(pools, refs: list[str], k_max: int) -> None:
    """The rerank grid over scored pools: corpus BLEU/chrF of each setting's choices from
    per-candidate sufficient statistics (sacrebleu's, summed: the corpus score exactly,
    fast), sorted by BLEU/retrieval + chrF/retrieval."""
    import itertools

    from workbench.tasks.rerank import RerankWeights, choose
    from workbench.tasks.transduction import CorpusStatistics

    # every candidate against its message's reference, once; a setting's choices are rows of it
    first = [0]  # pool i's candidates are rows first[i] ..
    for p in pools:
        first.append(first[-1] + len(p))
    stats = CorpusStatistics([c.text for p in pools for c in p], [refs[i] for i, p in enumerate(pools) for _ in p])

    def scores(picks: list[int]) -> tuple[float, float]:
        rows = [first[i] + j for i, j in enumerate(picks)]
        return stats.score("bleu", rows), stats.score("chrf", rows)

    r_bleu, r_chrf = scores([next(j for j, c in enumerate(p) if c.origin == "retrieved #1") for p in pools])
    print(f"  retrieval #1: BLEU {r_bleu:.2f} chrF {r_chrf:.2f}")
    rows = []
    ks = [k for k in (1, 2, 3, 5, 10, 20, 40) if k <= k_max]
    generics = (0.0, 0.25, 0.5) if all(c.prior for p in pools for c in p) else (0.0,)
    for k, own, ln, sim, ret, gen in itertools.product(ks, ("beam", "none"), (0.5, 1.0, 1.5, 2.0),
                                                       (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0),
                                                       (-4.0, -3.0, -2.0, -1.0, -0.5, 0.0, 1.0), generics):
        if own == "none" and ret != 0.0:
            continue  # the constant changes nothing among retrieved replies alone
        weights = RerankWeights(ln, sim, ret, own != "none", gen)
        picks = []
        for pool in pools:
            sub = [j for j, c in enumerate(pool) if (c.retrieved and int(c.origin.split("#")[1]) <= k)
                   or (c.origin in own.split("+"))]
            picks.append(sub[choose([pool[j] for j in sub], weights)])
        bleu, chrf = scores(picks)
        share = sum(pools[i][j].retrieved for i, j in enumerate(picks)) / len(picks)
        rows.append((bleu, chrf, k, own, ln, sim, ret, share, 0.0, gen))
    rows.sort(key=lambda r: -(r[0] / r_bleu + r[1] / r_chrf))
    print("  rerank grid, best 30 by BLEU/retrieval + chrF/retrieval (k, own pool, length_norm, similarity, "
          "retrieved bonus, generic): BLEU chrF, share retrieved")
    for r in rows[:30]:
        print(f"    k {r[2]:2d} own {r[3]:11s} ln {r[4]:g} sim {r[5]:g} ret {r[6]:+g} generic {r[9]:g}: {r[0]:.2f} "
              f"{r[1]:.2f} retrieved {r[7]:.0%}")
    both = [r for r in rows if r[0] > r_bleu and r[1] > r_chrf]
    print(f"  {len(both)} of {len(rows)} settings beat retrieval on both; best by chrF among them:")
    for r in sorted(both, key=lambda r: -r[1])[:10]:
        print(f"    k {r[2]:2d} own {r[3]:11s} ln {r[4]:g} sim {r[5]:g} ret {r[6]:+g} generic {r[9]:g}: {r[0]:.2f} "
              f"{r[1]:.2f} retrieved {r[7]:.0%}")
    print("  best 15 by the smaller of BLEU/retrieval and chrF/retrieval:")
    for r in sorted(rows, key=lambda r: -min(r[0] / r_bleu, r[1] / r_chrf))[:15]:
        print(f"    k {r[2]:2d} own {r[3]:11s} ln {r[4]:g} sim {r[5]:g} ret {r[6]:+g} generic {r[9]:g}: {r[0]:.2f} "
              f"{r[1]:.2f} retrieved {r[7]:.0%} (x{r[0] / r_bleu:.3f}, x{r[1] / r_chrf:.3f})")
    for r in rows:
        if r[4] == 1.0 and r[5] == 0.0 and r[6] == 0.0 and r[9] in (0.0, 0.5):  # the model's score (and MMI) alone
            print(f"    (model score alone, generic {r[9]:g}) k {r[2]:2d} own {r[3]:11s}: {r[0]:.2f} {r[1]:.2f} "
                  f"retrieved {r[7]:.0%}")
    import sacrebleu

    oracle = [max(p, key=lambda c: sacrebleu.sentence_chrf(c.text, [ref]).score).text for p, ref in zip(pools, refs)]
    from workbench.tasks.transduction import text_scores

    s = text_scores(oracle, refs)
    print(f"  oracle (best sentence chrF in the pool): BLEU {s['bleu']:.2f} chrF {s['chrf']:.2f}", flush=True)



def parroting_grid(pools, refs: list[str], messages: list[str]) -> None:
    """The overlap penalty (RerankWeights.overlap) on dev: BLEU/chrF and the parroting
    measures (workbench.tasks.parroting) of the choices under the kept weights and near
    them, with the penalty from 0 up, beside the references', retrieval's and beam's."""
    import itertools

    from workbench.tasks.parroting import parroting_scores
    from workbench.tasks.rerank import RerankWeights, choose
    from workbench.tasks.transduction import text_scores

    def line(name: str, texts: list[str]) -> tuple[float, float]:
        s, p = text_scores(texts, refs), parroting_scores(texts, messages)
        print(f"    {name:58s} BLEU {s['bleu']:5.2f} chrF {s['chrf']:5.2f} len {s['length_ratio']:.2f} | parrot "
              f"{p['parrot_share']:5.1%} repeat {p['repeat_share']:5.1%} overlap {p['overlap']:.2f}", flush=True)
        return s["bleu"], s["chrf"]

    print("  parroting (share of replies with >= 75% of their words from the message; share repeating a word):")
    line("references", refs)
    line("echo (the message)", messages)
    line("retrieval #1", [next(c for c in p if c.origin == "retrieved #1").text for p in pools])
    line("beam 4", [next(c for c in p if c.origin == "beam").text for p in pools])
    for k, sim, gen, ov in itertools.product((1, 2, 3), (2.0, 4.0, 6.0), (0.25, 0.5), (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)):
        w = RerankWeights(1.0, sim, 0.0, True, gen, overlap=ov)
        subs = [[c for c in p if c.origin == "beam" or (c.retrieved and int(c.origin.split("#")[1]) <= k)] for p in pools]
        chosen = [sub[choose(sub, w)] for sub in subs]
        share = sum(c.retrieved for c in chosen) / len(chosen)
        line(f"k {k} sim {sim:g} generic {gen:g} overlap {ov:g} (retrieved {share:.0%})", [c.text for c in chosen])


if __name__ == "__main__":
    main()
