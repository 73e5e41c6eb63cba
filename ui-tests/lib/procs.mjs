// Processes with bounded waits: commands that must finish in time, and long-running
// processes started in their own process group and stopped by PID.

import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';

/** Every process group started here that is not known to be gone. */
const live = new Set();

// Last resort: whatever the hooks did not stop is killed when this process exits.
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/**
 * Runs a command to its end, at most `timeoutMs`; resolves with its exit code and output.
 * `input` (a string) is written to its standard input.
 */
export function run(cmd, args, { env, input, timeoutMs = 60_000, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...env },
      cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no end after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, signal, stdout, stderr });
    });
    // A command that does not read its input may close it first.
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/** Like `run`, but fails unless the command exits 0; resolves with its standard output. */
export async function runOk(cmd, args, options) {
  const out = await run(cmd, args, options);
  if (out.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} exited ${out.code}: ${out.stderr.trim() || out.stdout.trim()}`,
    );
  }
  return out.stdout;
}

/**
 * Starts a long-running process in a new process group with its output in `logFile`.
 * Returns { pid, exited (a promise of the exit code), stop() }.
 */
export function startGroup(cmd, args, { logFile, env, cwd } = {}) {
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env },
    cwd,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const pid = child.pid;
  if (pid === undefined) {
    throw new Error(`cannot start ${cmd}`);
  }
  live.add(pid);
  let code = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (c, signal) => {
      code = c ?? signal;
      resolve(code);
    });
  });
  return {
    pid,
    exited,
    /** Whether the process has exited. */
    hasExited: () => code !== null,
    /**
     * SIGTERM to the process (not its group, so it can stop its own children), then
     * SIGKILL to the whole group after `graceMs`. Resolves with the exit code.
     */
    async stop(graceMs = 15_000) {
      if (code === null) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
        const timer = new Promise((resolve) => setTimeout(resolve, graceMs, 'timeout'));
        await Promise.race([exited, timer]);
      }
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // the group is gone
      }
      live.delete(pid);
      const limit = new Promise((resolve) => setTimeout(resolve, 5_000, 'unreaped'));
      return Promise.race([exited, limit]);
    },
  };
}

/**
 * Polls `probe` until it returns a truthy value, which it resolves with; fails after
 * `timeoutMs` naming `what`.
 */
export async function waitFor(what, probe, { timeoutMs = 30_000, intervalMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `gave up after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
