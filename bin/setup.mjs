// The set-up `npm run demo` and `npm test` do first (npm's predemo and pretest hooks), in plain Node with no
// dependencies, since node_modules may be missing:
//  1. `npm ci` when node_modules is missing or differs from package-lock.json;
//  2. when Dawn finds no WebGPU adapter, Mesa's CPU Vulkan driver (lavapipe) from apt as root, or, when not
//     root, one line saying what to run as root, and exit code 1.
// Usage: node bin/setup.mjs
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (line) => console.error(`juice setup: ${line}`);

/** Why node_modules does not match package-lock.json, or null when it does (npm's hidden lockfile lists what is installed). */
function staleReason() {
  const installedFile = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(installedFile)) return 'node_modules is missing';
  const locked = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages ?? {};
  const installed = JSON.parse(readFileSync(installedFile, 'utf8')).packages ?? {};
  for (const [name, p] of Object.entries(locked)) {
    if (name === '' || p.link) continue;
    // Optional packages for other platforms (esbuild's binaries) are not installed here.
    if (!installed[name]) { if (!p.optional) return `${name} is not installed`; continue; }
    if (installed[name].version !== p.version) return `${name} is ${installed[name].version}, package-lock.json wants ${p.version}`;
  }
  for (const name of Object.keys(installed)) if (!locked[name]) return `${name} is installed but not in package-lock.json`;
  return null;
}

function run(command, args) {
  const r = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) { say(`'${[command, ...args].join(' ')}' failed${r.error ? `: ${r.error.message}` : ''}`); process.exit(1); }
}

function haveAdapter() {
  const probe = `import { create, globals } from 'webgpu'; Object.assign(globalThis, globals);
    const a = await create([]).requestAdapter(); process.exit(a ? 0 : 1);`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: root, stdio: 'ignore', timeout: 120_000 }).status === 0;
}

/** The apt steps of installing lavapipe on this system: Debian 12's Mesa 22 is refused by Dawn; bookworm-backports has Mesa 25. */
function lavapipeSteps() {
  const os = existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '';
  const field = (k) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(os)?.[1] ?? '';
  if (field('ID') === 'debian' && field('VERSION_CODENAME') === 'bookworm') {
    return {
      backports: '/etc/apt/sources.list.d/juice-backports.list',
      install: ['install', '-y', '-qq', '-t', 'bookworm-backports', 'mesa-vulkan-drivers', 'libvulkan1'],
    };
  }
  return { backports: null, install: ['install', '-y', '-qq', 'mesa-vulkan-drivers', 'libvulkan1'] };
}

const BACKPORTS_LINE = 'deb http://deb.debian.org/debian bookworm-backports main';

function installLavapipe() {
  const steps = lavapipeSteps();
  if (process.getuid?.() !== 0) {
    const backports = steps.backports ? `echo '${BACKPORTS_LINE}' > ${steps.backports} && ` : '';
    say(`no WebGPU adapter: install Mesa's CPU Vulkan driver as root, then run this again: sudo sh -c "${backports}apt-get update && apt-get ${steps.install.join(' ')}"`);
    process.exit(1);
  }
  say("no WebGPU adapter: installing Mesa's CPU Vulkan driver (lavapipe)");
  process.env.DEBIAN_FRONTEND = 'noninteractive';
  run('apt-get', ['update', '-qq']);
  if (steps.backports) {
    writeFileSync(steps.backports, `${BACKPORTS_LINE}\n`);
    run('apt-get', ['update', '-qq']);
  }
  run('apt-get', steps.install);
}

const major = Number(process.versions.node.split('.')[0]);
if (major < 20) { say(`juice needs Node.js 20 or later; this is ${process.version}`); process.exit(1); }
const stale = staleReason();
if (stale) {
  say(`${stale}: npm ci`);
  run('npm', ['ci', '--no-audit', '--no-fund']);
}
if (!haveAdapter()) {
  installLavapipe();
  if (!haveAdapter()) { say('still no WebGPU adapter after installing lavapipe; check with: vulkaninfo --summary (package vulkan-tools)'); process.exit(1); }
}
