// The `ovlfs` command's shebang gives `ovlfs -f` (which serves the mount in its own process) the
// V8 flags the daemon that daemonize() starts gets; this keeps the two lists equal.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { DAEMON_NODE_FLAGS } from './mount'

describe('the command line of the ovlfs command', () => {
  it("its shebang runs node with the daemon's V8 flags, through env -S", () => {
    const first = fs.readFileSync(path.join(__dirname, 'main.ts'), 'utf8').split('\n')[0] ?? ''
    const m = /^#!\/usr\/bin\/env -S node((?: --[a-z-]+=\d+)*)$/.exec(first)
    expect(m, `shebang: ${first}`).not.toBeNull()
    expect((m?.[1] ?? '').trim().split(' ')).toEqual(DAEMON_NODE_FLAGS)
  })
})
