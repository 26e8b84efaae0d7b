// The option layer of every juice command: typed declarations, parsed by node:util's parseArgs and checked
// before any work starts. A refused command line is one line naming the flag and the value, exit code 2;
// `--help` is generated from the same declarations.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** A command line that cannot be run as given: printed as one line, exit code 2. */
export class UsageError extends Error {}

/** One declared option (or the positional argument): how parseArgs reads it, how it is checked, how --help shows it. */
export interface Option<T> {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly required?: boolean;
  /** The value's name in --help, e.g. N or DIR. */
  readonly metavar: string;
  readonly help: string;
  /** `flag` is how the message names it: `--steps`, or the positional's metavar. */
  check(raw: string | boolean | string[] | undefined, flag: string): T;
}

type Bounds = { min: number; max: number; help: string; metavar?: string };

const plain = (n: number) => (Math.abs(n) >= 1e6 && Number.isInteger(Math.log10(Math.abs(n))) ? `1e${Math.log10(Math.abs(n))}` : String(n));
const required = (flag: string): never => { throw new UsageError(`${flag} is required`); };

/** Decimal digits only: `1.5`, `0x10` and `1e3` are refused where an integer is meant. */
export function integer(o: Bounds & { default: number }): Option<number>;
export function integer(o: Bounds & { required: true }): Option<number>;
export function integer(o: Bounds): Option<number | undefined>;
export function integer(o: Bounds & { default?: number; required?: true }): Option<number | undefined> {
  const range = `an integer in [${plain(o.min)}, ${plain(o.max)}]`;
  return {
    type: 'string', required: o.required, metavar: o.metavar ?? 'N', help: `${o.help}; ${range}${o.default === undefined ? '' : `, default ${o.default}`}`,
    check(raw, flag) {
      if (raw === undefined) return o.required ? required(flag) : o.default;
      const n = /^[+-]?\d+$/.test(raw as string) ? Number(raw) : NaN;
      if (!(n >= o.min && n <= o.max)) throw new UsageError(`${flag} must be ${range}, got '${raw}'`);
      return n;
    },
  };
}

/** A decimal number in [min, max], or (min, max] with `minExclusive`. */
export function number(o: Bounds & { minExclusive?: boolean; default: number }): Option<number>;
export function number(o: Bounds & { minExclusive?: boolean }): Option<number | undefined>;
export function number(o: Bounds & { minExclusive?: boolean; default?: number }): Option<number | undefined> {
  const range = `a number in ${o.minExclusive ? '(' : '['}${plain(o.min)}, ${plain(o.max)}]`;
  return {
    type: 'string', metavar: o.metavar ?? 'X', help: `${o.help}; ${range}${o.default === undefined ? '' : `, default ${o.default}`}`,
    check(raw, flag) {
      if (raw === undefined) return o.default;
      const n = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw as string) ? Number(raw) : NaN;
      if (!((o.minExclusive ? n > o.min : n >= o.min) && n <= o.max)) throw new UsageError(`${flag} must be ${range}, got '${raw}'`);
      return n;
    },
  };
}

type Text = { help: string; metavar?: string };

export function string(o: Text & { required: true }): Option<string>;
export function string(o: Text & { default: string }): Option<string>;
export function string(o: Text & { multiple: true }): Option<string[]>;
export function string(o: Text): Option<string | undefined>;
export function string(o: Text & { required?: true; default?: string; multiple?: true }): Option<string | string[] | undefined> {
  return {
    type: 'string', multiple: o.multiple, required: o.required, metavar: o.metavar ?? 'TEXT', help: `${o.help}${o.required ? '; required' : o.multiple ? '; may repeat' : ''}`,
    check(raw, flag) {
      if (raw === undefined) return o.multiple ? [] : o.required ? required(flag) : o.default;
      return raw as string | string[];
    },
  };
}

/** A path that must exist, as a file or a directory. */
export function path(o: Text & { is: 'file' | 'dir'; required: true }): Option<string>;
export function path(o: Text & { is: 'file' | 'dir' }): Option<string | undefined>;
export function path(o: Text & { is: 'file' | 'dir'; required?: true }): Option<string | undefined> {
  const what = o.is === 'dir' ? 'directory' : 'file';
  return {
    type: 'string', required: o.required, metavar: o.metavar ?? (o.is === 'dir' ? 'DIR' : 'FILE'), help: `${o.help}${o.required ? '; required' : ''}`,
    check(raw, flag) {
      if (raw === undefined) return o.required ? required(flag) : undefined;
      const p = raw as string;
      if (!existsSync(p)) throw new UsageError(`${flag}: no such ${what} '${p}'`);
      if (statSync(p).isDirectory() !== (o.is === 'dir')) throw new UsageError(`${flag}: '${p}' is not a ${what}`);
      return p;
    },
  };
}

/** A file to write: its folder must exist and be writable, and the path must not be a directory. */
export function output(o: Text): Option<string | undefined> {
  return {
    type: 'string', metavar: o.metavar ?? 'FILE', help: `${o.help}; its folder must exist`,
    check(raw, flag) {
      if (raw === undefined) return undefined;
      const p = raw as string, folder = dirname(resolve(p));
      if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new UsageError(`${flag}: cannot write '${p}': no such folder '${folder}'`);
      if (existsSync(p) && statSync(p).isDirectory()) throw new UsageError(`${flag}: cannot write '${p}': it is a directory`);
      try { accessSync(folder, constants.W_OK); } catch { throw new UsageError(`${flag}: cannot write '${p}': folder '${folder}' is not writable`); }
      return p;
    },
  };
}

export function boolean(o: { help: string }): Option<boolean> {
  return { type: 'boolean', metavar: '', help: o.help, check: (raw) => raw === true };
}

export function choice<const C extends string>(o: { choices: readonly C[]; default: C; help: string }): Option<C> {
  return {
    type: 'string', metavar: o.choices.join('|'), help: `${o.help}; default ${o.default}`,
    check(raw, flag) {
      if (raw === undefined) return o.default;
      if (!o.choices.includes(raw as C)) throw new UsageError(`${flag} must be one of ${o.choices.join(', ')}, got '${raw}'`);
      return raw as C;
    },
  };
}

type Options = Record<string, Option<unknown>>;
export type Values<O extends Options> = { [K in keyof O]: O[K] extends Option<infer T> ? T : never };

export interface CommandSpec<O extends Options> {
  name: string;
  /** One line for the usage table. */
  summary: string;
  /** The one positional argument, when the command takes one (always required). */
  argument?: Option<string>;
  options: O;
  /** Runs with checked values; returns the exit code. May throw UsageError for a check that needs the inputs read. */
  run(values: Values<O>, argument: string): Promise<number>;
}

/** What the command table holds: a name, its usage, and `main` (parse, check, run; exit code). */
export interface Command {
  name: string;
  summary: string;
  /** `juice demo [--steps N ...]`. */
  synopsis: string;
  help(): string;
  main(args: string[]): Promise<number>;
}

/** How parseArgs' errors read as one line each. */
function rephrase(e: unknown): string {
  const { code, message } = e as { code?: string; message: string };
  const quoted = /'([^' ]+)/.exec(message)?.[1] ?? '';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': return `unknown option '${quoted}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/argument missing|ambiguous/.test(message)) return `${quoted} needs a value (a value starting with '-' is written ${quoted}=-X)`;
      if (/does not take an argument/.test(message)) return `${quoted} takes no value`;
      return message;
    default: return message;
  }
}

export function defineCommand<O extends Options>(spec: CommandSpec<O>): Command {
  const entries = Object.entries(spec.options);
  const synopsis = [`juice ${spec.name}`, ...(spec.argument ? [spec.argument.metavar] : []),
    ...entries.map(([k, o]) => (o.required ? `--${k} ${o.metavar}` : `[--${k}${o.metavar ? ` ${o.metavar}` : ''}]`))].join(' ');
  const help = () => {
    const rows: [string, string][] = [
      ...(spec.argument ? [[spec.argument.metavar, spec.argument.help] as [string, string]] : []),
      ...entries.map(([k, o]) => [`--${k}${o.metavar ? ` ${o.metavar}` : ''}`, o.help] as [string, string]),
      ['-h, --help', 'this text'],
    ];
    const width = Math.max(...rows.map(([l]) => l.length)) + 2;
    return [`usage: ${synopsis}`, '', spec.summary, '', ...rows.map(([l, h]) => `  ${l.padEnd(width)}${h}`)].join('\n');
  };
  const parse = (args: string[]): { values: Values<O>; argument: string } => {
    let parsed;
    try {
      parsed = parseArgs({ args, strict: true, allowPositionals: true, options: Object.fromEntries(entries.map(([k, o]) => [k, o.multiple ? { type: o.type, multiple: true } : { type: o.type }])) });
    } catch (e) {
      throw new UsageError(rephrase(e));
    }
    const extra = parsed.positionals.slice(spec.argument ? 1 : 0);
    if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const argument = spec.argument ? spec.argument.check(parsed.positionals[0] ?? required(spec.argument.metavar), spec.argument.metavar) : '';
    const raw = parsed.values as Record<string, string | boolean | string[] | undefined>;
    const values = Object.fromEntries(entries.map(([k, o]) => [k, o.check(raw[k], `--${k}`)])) as Values<O>;
    return { values, argument };
  };
  return {
    name: spec.name, summary: spec.summary, synopsis, help,
    async main(args) {
      const beforeDashes = args.indexOf('--') < 0 ? args : args.slice(0, args.indexOf('--'));
      if (beforeDashes.includes('--help') || beforeDashes.includes('-h')) { console.log(help()); return 0; }
      try {
        const { values, argument } = parse(args);
        return await spec.run(values, argument);
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        console.error(`juice ${spec.name}: ${e.message} (juice ${spec.name} --help)`);
        return 2;
      }
    },
  };
}
