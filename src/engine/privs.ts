import { promises as fsp } from 'node:fs'
import * as fs from 'node:fs'
import { promisify } from 'node:util'

const fstatP = promisify(fs.fstat)
const fchmodP = promisify(fs.fchmod)

const S_ISGID = 0o2000
const S_IXGRP = 0o010

/** Who writes: ids as on the layers, and the pid (for its supplementary groups). */
export interface Writer {
  readonly uid: number
  readonly gid: number
  readonly pid: number
}

/**
 * The part of the kernel's file_remove_privs that FUSE leaves to the daemon.
 * On a write by an unprivileged caller the kernel clears S_ISUID itself (a
 * setattr the FUSE client sends) and S_ISGID only where group-exec is set;
 * the VFS rule (setattr_should_drop_sgid) also clears S_ISGID without
 * group-exec when the writer is not in the file's group. The daemon writes
 * as root, so nothing below would do it: this does, once per open file.
 */
export async function dropSgidOnWrite (fd: number, who: Writer): Promise<void> {
  if (who.uid === 0) return
  const st = await fstatP(fd)
  if ((st.mode & S_ISGID) === 0 || (st.mode & S_IXGRP) !== 0) return
  if (st.gid === who.gid || await inSupplementaryGroup(who.pid, st.gid)) return
  await fchmodP(fd, st.mode & 0o7777 & ~S_ISGID)
}

async function inSupplementaryGroup (pid: number, gid: number): Promise<boolean> {
  if (pid <= 0) return false
  try {
    const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8')
    const line = /^Groups:\s*(.*)$/m.exec(status)?.[1] ?? ''
    return line.split(/\s+/).filter(Boolean).map(Number).includes(gid)
  } catch {
    return false
  }
}
