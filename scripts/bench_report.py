#!/usr/bin/env python3
"""Turn scripts/bench.sh's results into docs/bench/results.md and throughput plots.

usage: bench_report.py RESULTS.jsonl CRYPTO_BENCH.txt OUT_DIR
"""
import json
import re
import sys
from pathlib import Path

SETUP_ORDER = [
    "direct", "nginx", "s3s-proxy", "plain-base", "plain-sdk", "plain", "plain-w1", "enc-base",
    "enc-sdk", "enc", "enc-w1", "enc3-w1", "enc3-wmaj",
]
SETUP_NAMES = {
    "direct": "backend directly",
    "nginx": "nginx (reverse proxy)",
    "s3s-proxy": "s3s-proxy 0.14.1",
    "plain": "s3proxy, no encryption",
    "enc": "s3proxy, encrypted",
    "plain-base": "s3proxy, no encryption, before (BENCH_BASE_BIN)",
    "enc-base": "s3proxy, encrypted, before (BENCH_BASE_BIN)",
    "plain-sdk": "s3proxy, no encryption, SDK client",
    "enc-sdk": "s3proxy, encrypted, SDK client",
    "plain-w1": "s3proxy, no encryption, one runtime worker (TOKIO_WORKER_THREADS=1)",
    "enc-w1": "s3proxy, encrypted, one runtime worker (TOKIO_WORKER_THREADS=1)",
    "enc3-w1": "s3proxy, encrypted, 3 backends W=1",
    "enc3-wmaj": "s3proxy, encrypted, 3 backends W=majority",
}
ROUND_NAMES = {
    "s3s-fs": "s3s-fs (filesystem) backend",
    "memory": "in-memory backend (s3proxy, memory, no encryption)",
}


def size_label(n):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def load(path):
    runs = {}
    rss = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        label = r["label"]
        if r["op"] == "rss":
            rss[label.split("/", 1)[1]] = (r["peak_rss_kib"], r.get("size_label", ""))
            continue
        if "/" not in label:
            continue
        rnd, setup = label.split("/", 1)
        key = (r["op"], r["size"], r["concurrency"], r.get("range_size"))
        seen = runs.setdefault(rnd, {}).setdefault(setup, {})
        # With BENCH_REPEAT, the best of the repeated runs.
        if key not in seen or r.get("ops_per_sec", 0) > seen[key].get("ops_per_sec", 0):
            seen[key] = r
    return runs, rss


def crypto(path):
    out = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    m = re.search(r"raw XChaCha20-Poly1305 seal.*?([\d.]+) MiB/s", text)
    if m:
        out["raw_xchacha"] = float(m.group(1))
    m = re.search(r"raw XChaCha20-Poly1305 open.*?([\d.]+) MiB/s", text)
    if m:
        out["raw_xchacha_open"] = float(m.group(1))
    m = re.search(r"raw MD5.*?([\d.]+) MiB/s", text)
    if m:
        out["raw_md5"] = float(m.group(1))
    m = re.search(r"PUT \(encrypt\)\s+([\d.]+) MiB/s, GET \(decrypt\)\s+([\d.]+) MiB/s", text)
    if m:
        out["layer_encrypt"], out["layer_decrypt"] = float(m.group(1)), float(m.group(2))
    # The layer's own encrypt cost: over a sink, not over Memory (which hashes what it stores).
    m = re.search(r"over a sink: PUT.*?([\d.]+) MiB/s", text)
    if m:
        out["layer_encrypt"] = float(m.group(1))
    return out


def find(setup_runs, op, size=None, conc=None, rng=None):
    for (o, s, c, r), run in setup_runs.items():
        if o == op and (size is None or s == size) and (conc is None or c == conc) and r == rng:
            return run
    return None


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


def tables(rnd, setups):
    order = [s for s in SETUP_ORDER if s in setups]
    lines = [f"### {ROUND_NAMES.get(rnd, rnd)}", ""]
    small = [
        ("PUT 4 KiB ops/s (c=32)", "put", 4096, 32, None, "ops_per_sec"),
        ("GET 4 KiB ops/s (c=32)", "get", 4096, 32, None, "ops_per_sec"),
        ("HEAD ops/s (c=32)", "head", 4096, 32, None, "ops_per_sec"),
        ("HEAD p50 ms (c=1)", "head", 4096, 1, None, "p50"),
        ("HEAD p99 ms (c=1)", "head", 4096, 1, None, "p99"),
        ("LIST 256 keys ops/s (c=4)", "list", 4096, 4, None, "ops_per_sec"),
        ("DELETE ops/s (c=32)", "delete", 4096, 32, None, "ops_per_sec"),
    ]
    lines.append("| setup | " + " | ".join(c[0] for c in small) + " |")
    lines.append("|---" * (len(small) + 1) + "|")
    for s in order:
        cells = []
        for _, op, size, conc, rng, field in small:
            r = find(setups[s], op, size, conc, rng)
            if r is None:
                cells.append("–")
            elif field in ("p50", "p99"):
                cells.append(fmt(r["latency_ms"][field], 3))
            else:
                cells.append(fmt(r[field], 0))
        lines.append(f"| {SETUP_NAMES.get(s, s)} | " + " | ".join(cells) + " |")
    lines.append("")
    if not any(k[1] > 4096 for st in setups.values() for k in st):
        return lines
    sizes = sorted(
        {k[1] for st in setups.values() for k in st if k[0] in ("put", "get") and k[1] > 4096}
    )
    cols = []
    for size in sizes:
        cols.append((f"PUT {size_label(size)}", "put", size, None))
        cols.append((f"GET {size_label(size)}", "get", size, None))
        if any(find(st, "get", size, None, 1 << 20) for st in setups.values()):
            cols.append((f"GET 1 MiB ranges of {size_label(size)}", "get", size, 1 << 20))
    lines.append("Throughput, MiB/s:")
    lines.append("")
    lines.append("| setup | " + " | ".join(c[0] for c in cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for s in order:
        cells = []
        for _, op, size, rng in cols:
            r = find(setups[s], op, size, None, rng)
            cells.append("–" if r is None else fmt(r["mib_per_sec"]))
        lines.append(f"| {SETUP_NAMES.get(s, s)} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def cpu_us_per_op(run, who="proxy"):
    """CPU microseconds per operation spent by one side (the 256-key set-up included)."""
    if not run or "cpu_s" not in run or not run.get("ops"):
        return None
    spent = run["cpu_s"].get(who)
    return None if spent is None else spent * 1e6 / run["ops"]


def small_table(rnd, setups):
    """Issue #18's table: 4 KiB requests against nginx, with the proxy's CPU per request."""
    order = [s for s in SETUP_ORDER if s in setups]
    ng = setups.get("nginx")
    if ng is None:
        return []
    lines = [
        "Small requests against nginx (4 KiB, c=32; ratio = ops/s / nginx's; CPU = the "
        "proxy's user + system CPU per operation, in µs, the 256-key set-up included):",
        "",
        "| setup | PUT ops/s | ratio | CPU µs | GET ops/s | ratio | CPU µs | HEAD ops/s | ratio "
        "| CPU µs | HEAD p50 ms (c=1) | over nginx |",
        "|---" * 13 + "|",
    ]
    for s in order:
        cells = []
        for op in ("put", "get", "head"):
            r = find(setups[s], op, 4096, 32)
            n = find(ng, op, 4096, 32)
            cells.append(fmt(r and r["ops_per_sec"], 0))
            cells.append(fmt(ratio(r and r["ops_per_sec"], n and n["ops_per_sec"]), 2))
            cells.append(fmt(cpu_us_per_op(r), 0))
        r, n = find(setups[s], "head", 4096, 1), find(ng, "head", 4096, 1)
        cells.append(fmt(r and r["latency_ms"]["p50"], 3))
        cells.append(fmt(r and n and r["latency_ms"]["p50"] - n["latency_ms"]["p50"], 3))
        lines.append(f"| {SETUP_NAMES.get(s, s)} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def cpu_per_gib(run, who=None):
    """CPU seconds per GiB moved by a run: one side's (proxy, backends, client) or all."""
    if not run or "cpu_s" not in run or not run.get("bytes"):
        return None
    cpu = run["cpu_s"]
    spent = sum(cpu.values()) if who is None else cpu.get(who)
    return None if spent is None else spent / (run["bytes"] / (1 << 30))


def cpu_table(rnd, setups):
    """Where the CPU of the large transfers goes: the proxy, the backends, the client."""
    order = [s for s in SETUP_ORDER if s in setups]
    big = max(
        (k[1] for st in setups.values() for k in st if k[0] in ("put", "get") and k[1] > 4096),
        default=None,
    )
    if big is None or not any(
        "cpu_s" in r for st in setups.values() for r in st.values()
    ):
        return []
    lines = [
        f"CPU seconds per GiB moved, {size_label(big)} objects (proxy + backends + client = "
        "all; the machine has two cores, so a run needing *all* CPU-seconds per GiB cannot "
        "exceed 2 / *all* GiB/s):",
        "",
        "| setup | PUT proxy | PUT backends | PUT client | PUT all | GET proxy | GET backends "
        "| GET client | GET all |",
        "|---" * 9 + "|",
    ]
    for s in order:
        cells = []
        for op in ("put", "get"):
            r = find(setups[s], op, big)
            cells += [fmt(cpu_per_gib(r, w), 2) for w in ("proxy", "backends", "client", None)]
        lines.append(f"| {SETUP_NAMES.get(s, s)} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def verdict(value, bar, higher=True):
    if value is None:
        return "not measured"
    ok = value >= bar if higher else value < bar
    return "**met**" if ok else "**not met**"


def bar_lines(runs, rss, cr):
    lines = ["## The bar", ""]
    lines.append("| round | criterion | measured | bar | verdict |")
    lines.append("|---|---|---|---|---|")

    def mib(st, op, size, rng=None):
        r = find(st, op, size, None, rng) if st else None
        return r["mib_per_sec"] if r else None

    for rnd, setups in runs.items():
        if rnd == "rss":
            continue
        g = lambda s: setups.get(s)  # noqa: E731
        # Issue #18's bar: small requests at a bare hop's cost.
        for s, bar in (("plain", 0.6), ("enc", 0.5)):
            for op in ("get", "head", "put"):
                a = find(g(s), op, 4096, 32) if g(s) else None
                b = find(g("nginx"), op, 4096, 32) if g("nginx") else None
                if a is None or b is None:
                    continue
                v = ratio(a["ops_per_sec"], b["ops_per_sec"])
                lines.append(
                    f"| {rnd} | {op.upper()} 4 KiB c=32 ops/s: s3proxy ({SETUP_NAMES[s].split(', ')[1]}) "
                    f"/ nginx | {fmt(v, 2)} | ≥ {bar:.2f} | {verdict(v, bar)} |"
                )
            a = find(g(s), "head", 4096, 1) if g(s) else None
            b = find(g("nginx"), "head", 4096, 1) if g("nginx") else None
            if a and b:
                v = a["latency_ms"]["p50"] - b["latency_ms"]["p50"]
                lines.append(
                    f"| {rnd} | HEAD p50 c=1 over nginx's, s3proxy ({SETUP_NAMES[s].split(', ')[1]}) "
                    f"| {fmt(v, 3)} ms | ≤ 0.15 ms | {verdict(v, 0.15, higher=False)} |"
                )
        big = max(
            (k[1] for st in setups.values() for k in st if k[0] in ("put", "get") and k[1] > 4096),
            default=None,
        )
        if big is None:
            continue
        for op in ("get", "put"):
            v = ratio(mib(g("plain"), op, big), mib(g("nginx"), op, big))
            lines.append(
                f"| {rnd} | {op.upper()} {size_label(big)}: s3proxy (no encryption) / nginx "
                f"| {fmt(v, 2)} | ≥ 0.90 | {verdict(v, 0.9)} |"
            )
        for op in ("get", "put"):
            v = ratio(mib(g("enc"), op, big), mib(g("plain"), op, big))
            lines.append(
                f"| {rnd} | {op.upper()} {size_label(big)}: encrypted / unencrypted s3proxy "
                f"| {fmt(v, 2)} | ≥ 0.70 | {verdict(v, 0.7)} |"
            )
        v = ratio(mib(g("enc3-w1"), "put", big), mib(g("enc"), "put", big))
        lines.append(
            f"| {rnd} | PUT {size_label(big)}: 3 backends W=1 / 1 backend (encrypted) "
            f"| {fmt(v, 2)} | ≥ 0.80 | {verdict(v, 0.8)} |"
        )
        one = find(g("enc"), "put", big) if g("enc") else None
        three = find(g("enc3-w1"), "put", big) if g("enc3-w1") else None
        v = ratio(cpu_per_gib(three, "proxy"), cpu_per_gib(one, "proxy"))
        if v is not None:
            lines.append(
                f"| {rnd} | (for reference) proxy CPU per GiB, 3 backends W=1 / 1 backend: "
                f"the fan-out sends once per replica, it does not encrypt again | {fmt(v, 2)} | – | – |"
            )
        v = ratio(cpu_per_gib(one), cpu_per_gib(three))
        if v is not None:
            lines.append(
                f"| {rnd} | (for reference) ceiling of the line above on a CPU-bound machine: all "
                f"CPU per GiB, 1 backend / 3 backends W=1 (the backends run on the same two cores) "
                f"| {fmt(v, 2)} | – | – |"
            )
        v = None
        if g("plain") and g("enc"):
            plain_get, enc_get = find(g("plain"), "get", big), find(g("enc"), "get", big)
            v = ratio(cpu_per_gib(plain_get), cpu_per_gib(enc_get))
        if v is not None:
            lines.append(
                f"| {rnd} | (for reference) ceiling of encrypted / unencrypted GET on a CPU-bound "
                f"machine: all CPU per GiB, unencrypted / encrypted | {fmt(v, 2)} | – | – |"
            )
        for s in ("plain", "enc"):
            for op in ("put", "get", "head"):
                a = find(g(s), op, 4096, 32) if g(s) else None
                b = find(g("s3s-proxy"), op, 4096, 32) if g("s3s-proxy") else None
                v = ratio(a and a["ops_per_sec"], b and b["ops_per_sec"])
                lines.append(
                    f"| {rnd} | {op.upper()} 4 KiB c=32 ops/s: s3proxy ({SETUP_NAMES[s].split(', ')[1]}) "
                    f"/ s3s-proxy | {fmt(v, 2)} | ≥ 1.00 | {verdict(v, 1.0)} |"
                )
        for s in ("plain", "enc"):
            a = find(g(s), "head", 4096, 1) if g(s) else None
            b = find(g("direct"), "head", 4096, 1) if g("direct") else None
            v = (a["latency_ms"]["p50"] - b["latency_ms"]["p50"]) if a and b else None
            lines.append(
                f"| {rnd} | HEAD p50 added over the backend, s3proxy ({SETUP_NAMES[s].split(', ')[1]}) "
                f"| {fmt(v, 3)} ms | < 0.5 ms | {verdict(v, 0.5, higher=False)} |"
            )
    if "raw_xchacha" in cr:
        for what, key, raw in (("encrypt (PUT)", "layer_encrypt", "raw_xchacha"),
                               ("decrypt (GET)", "layer_decrypt", "raw_xchacha_open")):
            raw = raw if raw in cr else "raw_xchacha"  # older outputs had no open rate
            v = ratio(cr.get(key), cr[raw])
            lines.append(
                f"| crypto | layer {what}{' over a sink' if key == 'layer_encrypt' else ''} / raw XChaCha20-Poly1305 "
                f"{'open' if raw.endswith('open') else 'seal'} ({fmt(cr.get(key))} / "
                f"{fmt(cr[raw])} MiB/s) | {fmt(v, 2)} | ≥ 0.80 | {verdict(v, 0.8)} |"
            )
    if "raw_md5" in cr and "layer_encrypt" in cr:
        v = ratio(cr["layer_encrypt"], cr["raw_md5"])
        lines.append(
            f"| crypto | (for reference) layer encrypt / raw MD5, which every PUT needs for its "
            f"ETag ({fmt(cr['layer_encrypt'])} / {fmt(cr['raw_md5'])} MiB/s) | {fmt(v, 2)} | – | – |"
        )
    for s, (kib, size) in sorted(rss.items()):
        mibs = kib / 1024
        for op in ("put", "get"):
            r = find(runs.get("rss", {}).get(s, {}), op)
            if r:
                size = f"{size} ({op.upper()} {r['mib_per_sec']:.0f} MiB/s"
                size += ", multipart)" if op == "put" else ")"
        lines.append(
            f"| rss | peak RSS of s3proxy ({s}) streaming {size} in and out | {mibs:.1f} MiB "
            f"| < 64 MiB | {verdict(mibs, 64, higher=False)} |"
        )
    lines.append("")
    return lines


def plot(rnd, setups, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=False)
    for ax, op in zip(axes, ("put", "get")):
        for s in [s for s in SETUP_ORDER if s in setups]:
            pts = sorted(
                (k[1], r["mib_per_sec"] if k[1] > 4096 else r["ops_per_sec"] * k[1] / (1 << 20))
                for k, r in setups[s].items()
                if k[0] == op and k[3] is None and (k[1] > 4096 or k[2] == 32)
            )
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=SETUP_NAMES[s])
        ax.set_xscale("log", base=2)
        sizes = sorted({k[1] for st in setups.values() for k in st if k[0] == op})
        ax.set_xticks(sizes)
        ax.set_xticklabels([size_label(x) for x in sizes])
        ax.set_xlabel("object size")
        ax.set_ylabel("MiB/s")
        ax.set_title(f"{op.upper()} throughput, {ROUND_NAMES.get(rnd, rnd)}", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    name = f"throughput-{rnd}.png"
    fig.savefig(Path(out) / name, dpi=110)
    plt.close(fig)
    return name


def main():
    results, crypto_txt, out = sys.argv[1:4]
    runs, rss = load(results)
    cr = crypto(crypto_txt)
    lines = ["# Benchmark results", ""]
    lines.append(
        "Produced by `scripts/bench.sh` (see README.md here for the method); every number "
        "below comes from one session on one machine. Compare ratios, not absolute figures."
    )
    lines.append("")
    lines += bar_lines(runs, rss, cr)
    lines.append("## Results")
    lines.append("")
    for rnd, setups in runs.items():
        if rnd in ("rss",):
            continue
        lines += tables(rnd, setups)
        lines += small_table(rnd, setups)
        lines += cpu_table(rnd, setups)
        large = any(k[1] > 4096 for st in setups.values() for k in st)
        name = plot(rnd, setups, out) if large else None
        if name:
            lines.append(f"![{rnd} throughput]({name})")
            lines.append("")
    if cr:
        lines.append("## Crypto layer (`cargo bench -p s3proxy-bench --bench crypto_throughput`, same session)")
        lines.append("")
        lines.append("```")
        lines.append(Path(crypto_txt).read_text().strip())
        lines.append("```")
        lines.append("")
    small = Path(results).name == "results-small.jsonl"
    if small:
        lines[0] = "# Benchmark results: small requests (`BENCH_SMALL_ONLY=1`)"
    else:
        extra = Path(out, "results-small.md")
        if extra.exists():
            # The last small-request session, kept with the full one.
            lines.append(extra.read_text().replace("# Benchmark results", "## Last", 1))
    Path(out, "results-small.md" if small else "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
