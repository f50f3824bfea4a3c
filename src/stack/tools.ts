import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { TOOL_VERSIONS } from './versions.ts';

// Command-line tools the tests need, built once into the cache (<cache>/tools/<tool>-<version>/) from
// a package registry, like the servers in provision.ts: marked complete only after the build
// succeeded, so an interrupted build is redone, never used.

const COMPLETE = '.complete';

/** Where the pinned Helm lives: the directory and the binary in it. */
export function helmPaths(cacheDir: string): { dir: string; bin: string } {
  const dir = path.join(cacheDir, 'tools', `helm-${TOOL_VERSIONS.helm}`);
  return { dir, bin: path.join(dir, 'helm') };
}

/**
 * The pinned Helm, built with `go install helm.sh/helm/v4/cmd/helm@<version>` on first use (a few
 * minutes of CPU; Go's module proxy supplies the sources) and reused after. Returns the binary's
 * path. `report` gets one line when the build starts, one every `progressMs` while it compiles
 * (packages compiled so far), and one at the end.
 */
export async function ensureHelm(
  cacheDir: string,
  report: (line: string) => void,
  progressMs = 15_000,
): Promise<string> {
  const { dir, bin } = helmPaths(cacheDir);
  if (fs.existsSync(path.join(dir, COMPLETE)) && fs.existsSync(bin)) return bin;
  const version = TOOL_VERSIONS.helm;
  const partial = `${dir}.partial-${process.pid}`;
  await fs.promises.rm(partial, { recursive: true, force: true });
  await fs.promises.mkdir(partial, { recursive: true });
  const log = path.join(partial, 'build.log');
  const started = Date.now();
  report(
    `building Helm ${version} once into ${dir} (go install helm.sh/helm/v4/cmd/helm@${version}; a few minutes)`,
  );
  let compiled = 0;
  const ticker = setInterval(
    () =>
      report(
        `  building Helm ${version}: ${compiled} packages compiled, ${Math.round((Date.now() - started) / 1000)} s`,
      ),
    progressMs,
  );
  try {
    await new Promise<void>((resolve, reject) => {
      const out = fs.createWriteStream(log);
      const child = spawn(
        'go',
        [
          'install',
          '-v',
          '-trimpath',
          `-ldflags=-s -w -X helm.sh/helm/v4/internal/version.version=${version}`,
          `helm.sh/helm/v4/cmd/helm@${version}`,
        ],
        {
          env: { ...process.env, GOBIN: partial, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      child.stdout.pipe(out, { end: false });
      // `go install -v` names each package as it is compiled: the progress measure.
      readline.createInterface({ input: child.stderr }).on('line', (line) => {
        out.write(`${line}\n`);
        if (!line.startsWith('go: ')) compiled++;
      });
      child.once('error', (err) => {
        out.end();
        reject(
          new Error(
            `could not run go (${err.message}): Go 1.26+ is needed once to build the pinned Helm ${version}`,
          ),
        );
      });
      child.once('close', (code, signal) => {
        out.end(() => {
          if (code === 0) return resolve();
          const tail = fs.readFileSync(log, 'utf8').split('\n').slice(-25).join('\n');
          reject(
            new Error(
              `go install of Helm ${version} failed (${signal ?? `exit ${code}`}); see ${log}\n${tail}`,
            ),
          );
        });
      });
    });
  } finally {
    clearInterval(ticker);
  }
  if (!fs.existsSync(path.join(partial, 'helm')))
    throw new Error(`go install finished but no helm binary is in ${partial}`);
  await fs.promises.writeFile(path.join(partial, COMPLETE), new Date().toISOString());
  await fs.promises.rm(dir, { recursive: true, force: true });
  await fs.promises.rename(partial, dir);
  report(`built Helm ${version} in ${Math.round((Date.now() - started) / 1000)} s (${compiled} packages)`);
  return bin;
}
