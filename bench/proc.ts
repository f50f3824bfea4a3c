import fs from 'node:fs';

// What the bench reads about its child processes from /proc (Linux).

/** User + system CPU seconds of a process so far, from /proc/<pid>/stat (clock ticks of 1/100 s). */
export function cpuSeconds(stat: string): number {
  // The command name (field 2) may hold spaces and parentheses; the fields after its last ')' do not.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** CPU seconds of a running process by pid; NaN where /proc is not there or the process is gone. */
export function processCpuSeconds(pid: number | undefined): number {
  try {
    return cpuSeconds(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return NaN;
  }
}
