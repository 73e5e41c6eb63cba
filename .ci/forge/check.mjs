// Checks a real Otto node against what GitHub publishes:
//
// 1. statuses: the commit statuses the node posts for a run it starts from a repository
//    (to a local endpoint standing in for api.github.com) match the request body schema of
//    `repos/create-commit-status` in GitHub's OpenAPI description (@octokit/openapi), with
//    no property the schema does not name, at a path of the operation's template and with
//    GitHub's headers;
// 2. webhooks: GitHub's example push, tag and pull_request payloads
//    (@octokit/webhooks-examples), signed with GitHub's signer (@octokit/webhooks-methods),
//    start runs at the pushed commit; a wrong signature, a missing one, a replayed delivery
//    id and an oversized body are refused and start nothing.
//
// Usage (from .ci/forge/run, which installs the pinned packages): node check.mjs BIN_DIR
// Every wait is bounded; the node is stopped and its directory removed at the end.

import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, createWriteStream } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";

import Ajv from "ajv";
import { sign } from "@octokit/webhooks-methods";

const require = createRequire(import.meta.url);
const bins = process.argv[2];
if (!bins) {
  console.error("usage: node check.mjs BIN_DIR");
  process.exit(2);
}
const TOKEN = "ghp_forgeCheckTokenNeverLogged0";
const SECRET = "It's a Secret to Everybody";
const PATIENCE_MS = 60_000;

const work = mkdtempSync(join(tmpdir(), "otto-forge-check-"));
const home = join(work, "home");
const env = { ...process.env, OTTO_HOME: home, OTTO_AGENT: join(bins, "otto-agent"), RUST_LOG: "info" };
delete env.OTTO_NODE;
let node;
let failures = 0;

function check(ok, what) {
  if (ok) {
    console.log(`  ✓ ${what}`);
  } else {
    console.log(`  ✗ ${what}`);
    failures += 1;
  }
}

function run(cmd, args, opts = {}) {
  const out = spawnSync(cmd, args, { env, encoding: "utf8", ...opts });
  if (out.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${out.stderr}`);
  }
  return out.stdout;
}

function git(dir, ...args) {
  return run("git", ["-C", dir, ...args], {
    env: {
      ...env,
      GIT_AUTHOR_NAME: "Dev", GIT_AUTHOR_EMAIL: "dev@example.com",
      GIT_COMMITTER_NAME: "Dev", GIT_COMMITTER_EMAIL: "dev@example.com",
      GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null",
    },
  }).trim();
}

async function waitFor(what, fn) {
  const start = Date.now();
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() - start > PATIENCE_MS) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The stand-in for api.github.com: records each request, answers 201.
const received = [];
const forge = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    received.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
    res.writeHead(201, { "content-type": "application/json" });
    res.end("{}");
  });
});
await new Promise((r) => forge.listen(0, "127.0.0.1", r));
const forgeUrl = `http://127.0.0.1:${forge.address().port}`;

// A repository with branch `master`, as the examples have it.
const bare = join(work, "acme", "Hello-World.git");
const tree = join(work, "tree");
run("git", ["init", "--quiet", "--bare", "-b", "master", bare]);
run("git", ["init", "--quiet", "-b", "master", tree]);
git(tree, "remote", "add", "origin", bare);
function commit(content) {
  writeFileSync(join(tree, "version.txt"), content);
  git(tree, "add", "-A");
  git(tree, "commit", "--quiet", "-m", content.trim());
  return git(tree, "rev-parse", "HEAD");
}
writeFileSync(join(tree, "Ottofile"), `pipeline {
  name = 'hello'
  stage('Build') { steps { sh 'cat version.txt' } }
  stage('Test') { steps { sh 'grep -qv broken version.txt' } }
}
triggers {
  push { branches = ['master'] }
  tag { pattern = 'simple-*' }
  pull_request { }
}
`);
commit("one\n");
git(tree, "push", "--quiet", "origin", "master");

try {
  run(join(bins, "otto-node"), ["init", "--org", "acme", "--name", "n1", "--no-run-as"], { stdio: ["ignore", "ignore", "pipe"] });
  const log = createWriteStream(join(work, "node.log"));
  node = spawn(join(bins, "otto-node"), ["start"], { env, stdio: ["ignore", "ignore", "pipe"] });
  node.stderr.pipe(log);
  await waitFor("the node's API address", () => existsSync(join(home, "api.addr")));
  const api = `http://${readFileSync(join(home, "api.addr"), "utf8").trim()}`;
  const apiToken = readFileSync(join(home, "api.token"), "utf8").trim();
  run(join(bins, "otto"), ["secrets", "set", "GH_TOKEN"], { input: TOKEN });
  writeFileSync(join(work, "hook.secret"), SECRET);
  run(join(bins, "otto-node"), [
    "repo", "add", `file://${bare}`, "--name", "hello", "--forge", "github",
    "--secret-file", join(work, "hook.secret"), "--api-url", forgeUrl, "--token-secret", "GH_TOKEN",
  ]);
  const runs = async () => {
    const res = await fetch(`${api}/v1/runs?limit=100`, { headers: { authorization: `Bearer ${apiToken}` } });
    return (await res.json()).runs;
  };
  const runAt = (commitId, event) => async () =>
    (await runs()).find((r) => r.source?.commit === commitId && (!event || r.started_by.startsWith(event)));
  const finished = (id) => async () => {
    const r = (await runs()).find((x) => x.id === id);
    return r && ["succeeded", "failed", "cancelled"].includes(r.state) ? r : undefined;
  };
  const hook = async (event, payload, headers = {}) => {
    const body = typeof payload === "string" ? payload : JSON.stringify(payload);
    const all = {
      "content-type": "application/json",
      "x-github-event": event,
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": await sign(SECRET, body),
      ...headers,
    };
    // A header given as null is left out.
    const res = await fetch(`${api}/hooks/github/hello`, {
      method: "POST",
      headers: Object.fromEntries(Object.entries(all).filter(([, v]) => v !== null)),
      body,
    });
    return res.status;
  };
  const examples = require("@octokit/webhooks-examples/api.github.com/index.json");
  const example = (name, pick) => structuredClone(examples.find((e) => e.name === name).examples.find(pick));

  console.log("webhooks: GitHub's example payloads, signed by @octokit/webhooks-methods");
  const pushed = commit("two\n");
  git(tree, "push", "--quiet", "origin", "master");
  const push = example("push", (p) => p.ref === "refs/heads/master");
  push.after = pushed;
  // Refused before the good one: nothing may start for `pushed` until it is sent.
  const body = JSON.stringify(push);
  const wrong = await sign("another secret", body);
  check((await hook("push", body, { "x-hub-signature-256": wrong })) === 401, "a wrong signature is refused (401)");
  check((await hook("push", body, { "x-hub-signature-256": null })) === 401, "a missing signature is refused (401)");
  const big = JSON.stringify({ ...push, padding: "x".repeat(2 << 20) });
  check((await hook("push", big)) === 413, "a body over 1 MiB is refused (413)");
  check((await hook("push", body, { "x-hub-signature-256": await sign(SECRET, body + " ") })) === 401,
    "a signature of another body is refused (401)");
  check((await runAt(pushed)()) === undefined, "the refused deliveries started no run");
  const delivery = randomUUID();
  check((await hook("push", body, { "x-github-delivery": delivery })) === 202, "the signed push example is taken (202)");
  const pushRun = await waitFor("the push's run", runAt(pushed));
  check(pushRun.facts.branch === "master" && pushRun.facts.commit === pushed, `the push started a run at ${pushed.slice(0, 12)} on master`);
  check((await hook("push", body, { "x-github-delivery": delivery })) === 409, "the same delivery again is refused (409)");

  git(tree, "tag", "simple-tag");
  git(tree, "push", "--quiet", "origin", "simple-tag");
  const tagPush = example("push", (p) => p.ref === "refs/tags/simple-tag" && p.created);
  check((await hook("push", tagPush)) === 202, "the signed tag push example is taken (202)");
  const tagRun = await waitFor("the tag's run", async () => (await runs()).find((r) => r.facts.tag === "simple-tag"));
  check(tagRun.source.commit === pushed, "the tag started a run at the tagged commit");
  check((await hook("create", example("create", () => true))) === 202, "the create (tag) example is taken and starts nothing new");

  const head = commit("three\n");
  git(tree, "push", "--quiet", "origin", `${head}:refs/pull/2/head`);
  const fork = example("pull_request", (p) => p.action === "opened");
  fork.pull_request.head.repo.full_name = "mallory/Hello-World";
  check((await hook("pull_request", fork)) === 202, "a pull request from a fork is taken (202)...");
  const closed = example("pull_request", (p) => p.action === "closed");
  check((await hook("pull_request", closed)) === 202, "a closed pull request is taken (202)...");
  check((await runAt(head)()) === undefined, "...and neither starts a run");
  const opened = example("pull_request", (p) => p.action === "opened");
  check((await hook("pull_request", opened)) === 202, "the opened pull_request example is taken (202)");
  const prRun = await waitFor("the pull request's run", runAt(head));
  check(prRun.facts.branch === "master", "the pull request started a run of its head for its base branch");

  console.log("statuses: the node's requests against @octokit/openapi's repos/create-commit-status");
  const last = await waitFor("the push run to end", finished(pushRun.id));
  await waitFor("the push run's own status", () =>
    received.some((r) => r.url.endsWith(pushed) && JSON.parse(r.body).context === "otto" && JSON.parse(r.body).state !== "pending"));
  const spec = require("@octokit/openapi/generated/api.github.com.deref.json");
  const template = "/repos/{owner}/{repo}/statuses/{sha}";
  const operation = spec.paths[template].post;
  check(operation.operationId === "repos/create-commit-status", "the spec's operation is repos/create-commit-status");
  const schema = { ...operation.requestBody.content["application/json"].schema, additionalProperties: false };
  const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);
  const pattern = new RegExp("^" + template.replace(/\{[a-z]+\}/g, "([^/]+)") + "$");
  const statuses = received.filter((r) => r.url.endsWith(pushed));
  check(statuses.length >= 3, `${statuses.length} statuses posted for the push's commit (run ${last.state})`);
  let valid = true;
  for (const r of received) {
    const m = pattern.exec(r.url);
    const body = JSON.parse(r.body);
    if (r.method !== "POST" || !m || m[1] !== "acme" || m[2] !== "Hello-World" || !/^[0-9a-f]{40}$/.test(m[3])) {
      console.log(`    ${r.method} ${r.url}: not the operation's path`);
      valid = false;
    }
    if (!validate(body)) {
      console.log(`    ${r.body}: ${JSON.stringify(validate.errors)}`);
      valid = false;
    }
    if (r.headers.authorization !== `Bearer ${TOKEN}` || r.headers["x-github-api-version"] !== "2022-11-28"
      || r.headers.accept !== "application/vnd.github+json" || !r.headers["user-agent"]) {
      console.log(`    ${r.url}: GitHub's headers are missing`);
      valid = false;
    }
  }
  check(valid, `all ${received.length} status requests match the schema, path and headers`);
  const contexts = new Set(statuses.map((r) => JSON.parse(r.body).context));
  check(contexts.has("otto") && contexts.has("otto/Build") && contexts.has("otto/Test"),
    `one context per stage and one for the run (${[...contexts].join(", ")})`);
  check(!readFileSync(join(work, "node.log"), "utf8").includes(TOKEN), "the token is not in the node's log");
} catch (error) {
  console.log(`  ✗ ${error.message}`);
  failures += 1;
} finally {
  if (node && node.exitCode === null) {
    node.kill("SIGTERM");
    await Promise.race([new Promise((r) => node.on("exit", r)), new Promise((r) => setTimeout(r, 10_000))]);
  }
  forge.close();
  if (failures) {
    console.log(`node log (${join(work, "node.log")}):`);
    try { console.log(readFileSync(join(work, "node.log"), "utf8").split("\n").slice(-40).join("\n")); } catch {}
  } else {
    rmSync(work, { recursive: true, force: true });
  }
}
console.log(failures ? `${failures} check(s) failed` : "all forge checks passed");
process.exit(failures ? 1 : 0);
