import { defineConfig } from 'vitest/config'

// Unit tests live beside the code in src/ (plain directories, no FUSE);
// native-tests/ mount for real through the CLI in child processes.
// Native tests share /dev/fuse and the kernel's overlayfs, so files run one at a time.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'native-tests/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    pool: 'forks',
    reporters: ['default'],
  },
})
