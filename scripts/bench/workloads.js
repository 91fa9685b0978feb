'use strict'
// The workloads of issue 5. Each runs on a fresh mount (fresh empty
// upper/work) of one stack of the data set. `cold`: the page cache is dropped
// (sync; echo 3 > /proc/sys/vm/drop_caches) after mounting, right before the
// timed command. `prep`: an untimed command on the same mount first (a warm-up
// pass). The timed command's stdout is a count (lines, bytes) that is
// compared across implementations; `expect` is the count it must give.
//
// ctx: { mnt, ds (data set dir, read-only), m (manifest), lowers, tmp, statScript, halves (tar -T lists) }

const path = require('node:path')
const { q } = require('./lib')

const FIND = (dir) => `find ${q(dir)} -printf '%s %m\\n' | wc -l`
const TAR_ALL = (c) => `tar -C ${q(c.mnt)} --exclude=${q(c.m.root.tarExclude)} -cf - . | wc -c`
// dd reads every block (GNU tar and some cats skip or splice when writing to /dev/null).
const DD = (file) => `dd if=${q(file)} of=/dev/null bs=1M status=none`
const STAT = (c, prefix) => `${q(process.execPath)} ${q(c.statScript)} ${q(path.join(c.mnt, c.m.stats.dir))} ${prefix} ${c.m.stats.count}`
// Lower layers into the page cache (read directly, not through the mount).
const WARM_LOWERS = (c) => `find ${c.lowers.map(q).join(' ')} -printf '%s\\n' > /dev/null`

const statParse = (wantFound) => (res, c) => {
  const r = JSON.parse(res.stdout.trim().split('\n').pop())
  const n = c.m.stats.count
  const ok = wantFound ? r.found === n : r.missing === n
  return {
    seconds: r.seconds,
    output: `found=${r.found} missing=${r.missing} other=${r.other}`,
    error: ok ? null : `expected ${wantFound ? 'all found' : 'all missing'}: found=${r.found} missing=${r.missing} other=${r.other}${r.firstError ? ' (' + r.firstError + ')' : ''}`,
  }
}

const WORKLOADS = [
  {
    name: 'find-cold',
    core: true,
    stack: 'root',
    cold: true,
    what: "find -printf '%s %m\\n' over the root, cold",
    cmd: (c) => FIND(c.mnt),
  },
  {
    name: 'find-warm',
    core: true,
    stack: 'root',
    what: 'the same find, second pass on the same mount',
    prep: (c) => FIND(c.mnt),
    cmd: (c) => FIND(c.mnt),
  },
  {
    name: 'tar-cold',
    core: true,
    stack: 'root',
    cold: true,
    what: 'tar -cf - . | wc -c of the root without big/, cold (small-file reads)',
    cmd: TAR_ALL,
  },
  {
    name: 'read-1g-cold',
    core: true,
    stack: 'root',
    cold: true,
    what: 'sequential read (dd bs=1M) of the 1 GiB file, cold',
    cmd: (c) => DD(path.join(c.mnt, c.m.root.largeFile)),
    bytes: (m) => m.root.largeSize,
  },
  {
    name: 'copyup-append',
    core: true,
    stack: 'root',
    cold: true,
    what: 'first append of 1 byte to the 256 MiB lower file (copy-up), cold; sync afterwards, untimed',
    cmd: (c) => `printf x >> ${q(path.join(c.mnt, c.m.root.appendFile))}`,
    after: (c) => `sync; stat -c %s ${q(path.join(c.mnt, c.m.root.appendFile))}`,
    afterExpect: (m) => String(m.root.appendSize + 1),
    bytes: (m) => m.root.appendSize,
  },
  {
    name: 'untar-sync',
    core: true,
    stack: 'root',
    what: 'tar -xf of 5,000 small files into a new directory, then sync',
    prep: (c) => `cat ${q(path.join(c.ds, c.m.untar.tarball))} > /dev/null`,
    cmd: (c) => `mkdir ${q(path.join(c.mnt, 'untar'))} && tar -C ${q(path.join(c.mnt, 'untar'))} -xf ${q(path.join(c.ds, c.m.untar.tarball))} && sync`,
    after: (c) => `find ${q(path.join(c.mnt, 'untar'))} -type f | wc -l`,
    afterExpect: (m) => String(m.untar.files),
  },
  {
    name: 'rm-rf-cold',
    core: true,
    stack: 'root',
    cold: true,
    what: 'rm -rf of a lower subtree, cold',
    cmd: (c) => `rm -rf ${q(path.join(c.mnt, c.m.root.rmDir))}`,
    after: (c) => `test ! -e ${q(path.join(c.mnt, c.m.root.rmDir))} && ls -A ${q(path.dirname(path.join(c.mnt, c.m.root.rmDir)))} | grep -cx ${q(path.basename(c.m.root.rmDir))}; true`,
    afterExpect: () => '0',
  },
  {
    name: 'ls-20k-cold',
    core: true,
    stack: 'root',
    cold: true,
    what: 'ls -f of the 20,000-entry directory, cold',
    cmd: (c) => `ls -f ${q(path.join(c.mnt, c.m.root.bigDir))} | wc -l`,
    expect: (m) => String(m.root.bigDirEntries + 2),
  },
  {
    name: 'stat-bottom-40',
    core: true,
    stack: 'stack40',
    what: '1,000 stat()s of names only in the bottom of 40 layers (fresh mount, lowers in page cache)',
    prep: WARM_LOWERS,
    cmd: (c) => STAT(c, c.m.stats.bottomPrefix),
    parse: statParse(true),
  },
  {
    name: 'stat-missing-40',
    core: true,
    stack: 'stack40',
    what: '1,000 stat()s of names in no layer of 40 (fresh mount, lowers in page cache)',
    prep: WARM_LOWERS,
    cmd: (c) => STAT(c, c.m.stats.missingPrefix),
    parse: statParse(false),
  },
  {
    name: 'find-40-cold',
    core: true,
    stack: 'stack40',
    cold: true,
    what: "find -printf '%s %m\\n' over the 40-layer stack, cold",
    cmd: (c) => FIND(c.mnt),
  },
  {
    name: 'tar-2x-concurrent-cold',
    core: true,
    stack: 'root',
    cold: true,
    what: 'two concurrent tar -cf - | wc -c over halves of the root, cold',
    cmd: (c) => {
      const [a, b] = c.halves.map(q)
      const one = (list) => `tar -C ${q(c.mnt)} -T ${list} -cf - | wc -c`
      return `set -o pipefail; ( ${one(a)} ) > ${q(c.tmp + '/a')} & pa=$!; ( ${one(b)} ) > ${q(c.tmp + '/b')} & pb=$!; ` +
        `wait $pa; ra=$?; wait $pb; rb=$?; echo $(( $(cat ${q(c.tmp + '/a')}) + $(cat ${q(c.tmp + '/b')}) )); exit $(( ra | rb ))`
    },
  },
  // Not in the list but in its targets ("repeated reads"), and the linearity checks.
  {
    name: 'read-1g-warm',
    core: false,
    stack: 'root',
    what: 'the 1 GiB read again on the same mount (page cache warm)',
    prep: (c) => DD(path.join(c.mnt, c.m.root.largeFile)),
    cmd: (c) => DD(path.join(c.mnt, c.m.root.largeFile)),
    bytes: (m) => m.root.largeSize,
  },
  {
    name: 'find-20k-cold',
    core: false,
    stack: 'root',
    cold: true,
    what: 'linearity: find -printf over the 20,000-entry directory, cold',
    cmd: (c) => FIND(path.join(c.mnt, c.m.root.bigDir)),
    expect: (m) => String(m.root.bigDirEntries + 1),
  },
  {
    name: 'find-200k-cold',
    core: false,
    stack: 'dirbig',
    cold: true,
    what: 'linearity: find -printf over the 200,000-entry directory, cold',
    cmd: (c) => FIND(path.join(c.mnt, c.m.dirbig.dir)),
    expect: (m) => String(m.dirbig.entries + 1),
  },
  {
    name: 'ls-200k-cold',
    core: false,
    stack: 'dirbig',
    cold: true,
    what: 'linearity: ls -f of the 200,000-entry directory, cold',
    cmd: (c) => `ls -f ${q(path.join(c.mnt, c.m.dirbig.dir))} | wc -l`,
    expect: (m) => String(m.dirbig.entries + 2),
  },
  {
    name: 'stat-bottom-2',
    core: false,
    stack: 'stack2',
    what: 'linearity: the 1,000 bottom-only stat()s through 2 layers',
    prep: WARM_LOWERS,
    cmd: (c) => STAT(c, c.m.stats.bottomPrefix),
    parse: statParse(true),
  },
]

// Extras on mounts without an upper layer (how `ovlfs mount-image` mounts an image by default),
// where ovlfs hands reads to the kernel (FUSE passthrough, patch item 32): the same workloads.
for (const name of ['tar-cold', 'read-1g-cold', 'read-1g-warm']) {
  const w = WORKLOADS.find(x => x.name === name)
  WORKLOADS.push({ ...w, name: `${name}-ro`, core: false, readOnly: true, what: `${name} on a mount without an upper layer` })
}

module.exports = { WORKLOADS }
