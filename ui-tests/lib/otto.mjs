// Real Otto nodes for the browser tests: where the binaries and the screenshots are,
// a node made with `otto-node init` and started with `otto-node start`, and the `otto`
// commands an operator types, with the node's home.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { run, runOk, startGroup, waitFor } from './procs.mjs';

/** The workspace root (the directory above ui-tests/). */
export const workspace = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The cargo target directory: $CARGO_TARGET_DIR, else the workspace's target/. */
export const targetDir = process.env.CARGO_TARGET_DIR
  ? resolve(process.env.CARGO_TARGET_DIR)
  : join(workspace, 'target');

/** Where otto, otto-node, otto-agent and otto-testnet are: $OTTO_BIN_DIR or release/. */
export const binDir = process.env.OTTO_BIN_DIR
  ? resolve(process.env.OTTO_BIN_DIR)
  : join(targetDir, 'release');

/** Where the screenshots go. */
export const shotsDir = join(targetDir, 'ui-shots');

/** The path of one of the Otto executables; fails naming the build command if missing. */
export function bin(name) {
  const path = join(binDir, name);
  if (!existsSync(path)) {
    throw new Error(
      `${path} is missing: build it with \`cargo build --release --bin otto --bin otto-node ` +
        '--bin otto-agent --bin otto-testnet` (or run ui-tests/run.sh)',
    );
  }
  return path;
}

/** A new temporary directory named after `what`. */
export function tempDir(what) {
  return mkdtempSync(join(tmpdir(), `otto-ui-${what}-`));
}

/** `OTTO_HOME=HOME otto ARGS`; resolves with standard output, fails unless it exits 0. */
export function otto(home, args, options = {}) {
  return runOk(bin('otto'), args, { ...options, env: { ...options.env, OTTO_HOME: home } });
}

/**
 * A one-time login URL for the node at `home`, from `otto ui --json` as an operator
 * would get it.
 */
export async function cliLoginUrl(home) {
  const out = await otto(home, ['ui', '--json'], { timeoutMs: 30_000 });
  const answer = JSON.parse(out);
  if (typeof answer.url !== 'string' || !answer.url.includes('/ui/login/')) {
    throw new Error(`otto ui --json gave no login URL: ${out}`);
  }
  return answer.url;
}

/**
 * A one-time login URL from the API behind `otto ui` (`POST /v1/ui/logins` with the
 * home's API token).
 */
export async function apiLoginUrl(home) {
  const token = readFileSync(join(home, 'api.token'), 'utf8').trim();
  const response = await fetch(`${apiBase(home)}/v1/ui/logins`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  if (response.status !== 201) {
    throw new Error(`POST /v1/ui/logins answered ${response.status}: ${text}`);
  }
  return JSON.parse(text).url;
}

/**
 * A one-time login URL: from `otto ui --json`; from the API only when this `otto` has
 * no `ui` command yet (the login test checks the command itself).
 */
export async function loginUrl(home) {
  try {
    return await cliLoginUrl(home);
  } catch (e) {
    if (!/unrecognized subcommand/.test(e.message)) throw e;
    return apiLoginUrl(home);
  }
}

/** The API address a running node wrote to its home, as `http://HOST:PORT`. */
export function apiBase(home) {
  return `http://${readFileSync(join(home, 'api.addr'), 'utf8').trim()}`;
}

/**
 * Makes a node (`otto-node init --home DIR/home --org ORG --name NAME --no-run-as`) and
 * starts it; resolves once it wrote its API address. `stop()` stops it by PID and removes
 * its directory. It runs only its own org's stages, so it names no step user: as root
 * (CI), its steps run as root without capabilities.
 */
export async function startNode({ org = 'acme', name = 'n1' } = {}) {
  const dir = tempDir(name);
  const home = join(dir, 'home');
  const logFile = join(dir, `${name}.log`);
  await runOk(bin('otto-node'), ['init', '--home', home, '--org', org, '--name', name, '--no-run-as']);
  const proc = startGroup(bin('otto-node'), ['start', '--home', home], { logFile });
  await waitFor(
    `${name} to write its API address (log: ${logFile})`,
    () => {
      if (proc.hasExited()) {
        throw new Error(`otto-node exited: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
      }
      return existsSync(join(home, 'api.addr'));
    },
    { timeoutMs: 30_000 },
  );
  return {
    dir,
    home,
    logFile,
    proc,
    base: apiBase(home),
    stop: async () => {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Writes `files` ({relative path: text}) into a new directory; its path. */
export function writeProject(what, files) {
  const dir = tempDir(what);
  for (const [path, text] of Object.entries(files)) {
    const full = join(dir, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, text);
  }
  return dir;
}

/** `otto run DIR --detach` on the node; resolves with the run id. */
export async function startRun(home, projectDir) {
  const out = await otto(home, ['run', projectDir, '--detach']);
  const id = out.trim().split(/\s+/).pop();
  if (!id) throw new Error(`otto run --detach printed no run id: ${out}`);
  return id;
}

/** `otto status RUN --json` on the node. */
export async function status(home, runId) {
  return JSON.parse(await otto(home, ['status', runId, '--json']));
}

export { run, runOk, startGroup, waitFor };
