// Webhook received → first step started, over N pushes to a repository whose mirror is
// warm, against a baseline in the same run: `otto run --detach` of the same files (snapshot
// upload → first step started). Not part of CI; docs/performance.md reports it.
//
// Usage: node .ci/forge/latency.mjs BIN_DIR [PUSHES=200] [BASELINE=50]
// The step writes its own start time (date +%s%N) to a file the node lets steps write; the
// time before the webhook's POST (or before `otto run` is spawned) is subtracted from it.
// Every wait is bounded (30 s per run); the node is stopped at the end.

import { spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, createWriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [bins, pushes = "200", baseline = "50"] = process.argv.slice(2);
if (!bins) {
  console.error("usage: node latency.mjs BIN_DIR [PUSHES] [BASELINE]");
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), "otto-latency-"));
const home = join(work, "home");
const out = join(work, "out");
mkdirSync(out);
const env = { ...process.env, OTTO_HOME: home, OTTO_AGENT: join(bins, "otto-agent"), RUST_LOG: "warn" };
delete env.OTTO_NODE;
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { env, encoding: "utf8", ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
};
const genv = { ...env, GIT_AUTHOR_NAME: "B", GIT_AUTHOR_EMAIL: "b@example.com", GIT_COMMITTER_NAME: "B", GIT_COMMITTER_EMAIL: "b@example.com", GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null" };
const git = (dir, ...args) => run("git", ["-C", dir, ...args], { env: genv }).trim();

const bare = join(work, "app.git");
const tree = join(work, "tree");
run("git", ["init", "--quiet", "--bare", "-b", "main", bare]);
run("git", ["init", "--quiet", "-b", "main", tree]);
git(tree, "remote", "add", "origin", bare);
const ottofile = `pipeline {
  name = 'latency'
  stage('Go') { steps { sh 'echo "$(date +%s%N) $(cat n.txt)" >> ${out}/starts' } }
}
triggers { push { branches = ['main'] } }
`;
writeFileSync(join(tree, "Ottofile"), ottofile);
writeFileSync(join(tree, "n.txt"), "w0\n");
git(tree, "add", "-A");
git(tree, "commit", "--quiet", "-m", "start");
git(tree, "push", "--quiet", "origin", "main");

run(join(bins, "otto-node"), ["init", "--org", "acme", "--name", "bench", "--no-run-as"]);
const config = join(home, "config.toml");
writeFileSync(config, readFileSync(config, "utf8").replace("writable = []", `writable = ["${out}"]`));
const log = createWriteStream(join(work, "node.log"));
const node = spawn(join(bins, "otto-node"), ["start"], { env, stdio: ["ignore", "ignore", "pipe"] });
node.stderr.pipe(log);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (let i = 0; !existsSync(join(home, "api.addr")); i++) {
  if (i > 600) throw new Error("the node did not start");
  await sleep(50);
}
const api = `http://${readFileSync(join(home, "api.addr"), "utf8").trim()}`;
const SECRET = "latency-secret";
writeFileSync(join(work, "hook.secret"), SECRET);
run(join(bins, "otto-node"), ["repo", "add", `file://${bare}`, "--name", "app", "--secret-file", join(work, "hook.secret")]);

const started = (tag) => {
  if (!existsSync(join(out, "starts"))) return undefined;
  const line = readFileSync(join(out, "starts"), "utf8").split("\n").find((l) => l.endsWith(` ${tag}`));
  return line ? Number(BigInt(line.split(" ")[0]) / 1000n) / 1000 : undefined; // ms, fractional
};
const waitStart = async (tag) => {
  const t = Date.now();
  for (;;) {
    const at = started(tag);
    if (at !== undefined) return at;
    if (Date.now() - t > 30_000) throw new Error(`no step started for ${tag}`);
    await sleep(2);
  }
};
const nowMs = () => performance.timeOrigin + performance.now();

async function push(i) {
  const tag = `p${i}`;
  writeFileSync(join(tree, "n.txt"), `${tag}\n`);
  git(tree, "commit", "--quiet", "-am", tag);
  git(tree, "push", "--quiet", "origin", "main");
  const body = JSON.stringify({ ref: "refs/heads/main" });
  const sig = "sha256=" + createHmac("sha256", SECRET).update(body).digest("hex");
  const t0 = nowMs();
  const res = await fetch(`${api}/hooks/generic/app`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": sig, "x-github-delivery": `d-${i}-${process.pid}` },
    body,
  });
  if (res.status !== 202) throw new Error(`webhook answered ${res.status}`);
  return (await waitStart(tag)) - t0;
}

async function direct(i) {
  const tag = `b${i}`;
  const dir = join(work, `direct-${i}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "Ottofile"), ottofile.replace(/triggers.*\n/, ""));
  writeFileSync(join(dir, "n.txt"), `${tag}\n`);
  const t0 = nowMs();
  run(join(bins, "otto"), ["run", "--detach", dir]);
  const at = await waitStart(tag);
  rmSync(dir, { recursive: true, force: true });
  return at - t0;
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
try {
  // Warm up: the first push fills the mirror's pack and the agent's page cache.
  await push(0);
  const hooks = [];
  const base = [];
  for (let i = 1; i <= Number(pushes); i++) {
    hooks.push(await push(i));
    if (i % Math.max(1, Math.floor(Number(pushes) / Number(baseline))) === 0 && base.length < Number(baseline)) {
      base.push(await direct(i));
    }
  }
  const show = (name, xs) =>
    console.log(`${name}: n=${xs.length} p50=${pct(xs, 50).toFixed(1)} ms p99=${pct(xs, 99).toFixed(1)} ms min=${Math.min(...xs).toFixed(1)} max=${Math.max(...xs).toFixed(1)}`);
  show("webhook → first step started", hooks);
  show("otto run --detach → first step started (baseline)", base);
  console.log(`ratio of p50s (webhook / baseline): ${(pct(hooks, 50) / pct(base, 50)).toFixed(2)}`);
} finally {
  node.kill("SIGTERM");
  await Promise.race([new Promise((r) => node.on("exit", r)), sleep(10_000)]);
  rmSync(work, { recursive: true, force: true });
}
