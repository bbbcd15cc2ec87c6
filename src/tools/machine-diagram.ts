/**
 * Draws an xstate v5 machine as a Mermaid `stateDiagram-v2` — the actors are the protocol's spec,
 * so their diagrams are generated from the machines themselves, never drawn by hand.
 *
 * Walk: from the root StateNode, depth first in definition order. Each compound state becomes a
 * `state X { … }` block with its `[*] -->` initial arrow; final states get `--> [*]`. Every
 * transition is an arrow from its source to each target, labelled with what triggers it: the event
 * type, `always`, `after <delay>`, `done <actor>` / `error <actor>` for an invoked actor's
 * completion, plus `(guard)` when guarded. Invoked actors are listed in a note per state.
 * Transitions without a target (actions only) are drawn as self-loops only when they are guarded
 * or named events, so the diagram shows every event a state reacts to. State names are the
 * node ids with dots replaced (Mermaid ids), labelled with their key. Output is deterministic.
 */

/** The parts of an xstate StateNode the drawing reads (kept structural: xstate's types are deep). */
export interface DrawableStateNode {
  id: string;
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  states: Record<string, DrawableStateNode>;
  initial?: { target: readonly DrawableStateNode[] } | undefined;
  transitions: Map<string, readonly DrawableTransition[]>;
  always?: readonly DrawableTransition[] | undefined;
  invoke: readonly { id: string; src: unknown }[];
}

export interface DrawableTransition {
  eventType: string;
  target?: readonly DrawableStateNode[] | undefined;
  guard?: unknown;
  delay?: unknown;
}

export interface DrawableMachine {
  root: DrawableStateNode;
}

const DONE = 'xstate.done.actor.';
const ERROR = 'xstate.error.actor.';
const AFTER = 'xstate.after.';

function mermaidId(node: DrawableStateNode): string {
  return node.id.replace(/[^A-Za-z0-9_]/g, '_');
}

function guardName(guard: unknown): string | undefined {
  if (guard === undefined) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') return guard.name !== '' && guard.name !== 'guard' ? guard.name : 'guard';
  if (typeof guard === 'object' && guard !== null && 'type' in guard)
    return String((guard as { type: unknown }).type);
  return 'guard';
}

function srcName(src: unknown): string {
  if (typeof src === 'string') return src;
  if (typeof src === 'object' && src !== null && 'id' in src) return String((src as { id: unknown }).id);
  return 'actor';
}

/** Keeps labels to characters Mermaid accepts after the `:` separator. */
function clean(label: string): string {
  return label.replace(/[^A-Za-z0-9_ .,#/()<>=+-]/g, '_');
}

function triggerLabel(t: DrawableTransition, invokeSrc: Map<string, string>): string {
  let label: string;
  if (t.eventType === '') label = 'always';
  else if (t.eventType.startsWith(DONE))
    label = `done ${invokeSrc.get(t.eventType.slice(DONE.length)) ?? 'actor'}`;
  else if (t.eventType.startsWith(ERROR))
    label = `error ${invokeSrc.get(t.eventType.slice(ERROR.length)) ?? 'actor'}`;
  else if (t.eventType.startsWith(AFTER)) {
    const delay = t.delay ?? t.eventType.slice(AFTER.length).split('.')[0];
    label = `after ${typeof delay === 'number' ? `${delay}ms` : String(delay)}`;
  } else label = t.eventType;
  const guard = guardName(t.guard);
  return clean(guard === undefined ? label : `${label} (${guard})`);
}

/** Mermaid source for `machine` (without the surrounding code fence). */
export function machineToMermaid(machine: DrawableMachine): string {
  const lines: string[] = ['stateDiagram-v2'];
  const invokeSrc = new Map<string, string>();
  const collect = (node: DrawableStateNode): void => {
    for (const inv of node.invoke) invokeSrc.set(inv.id, srcName(inv.src));
    for (const child of Object.values(node.states)) collect(child);
  };
  collect(machine.root);

  const arrows: string[] = [];
  const drawTransitions = (node: DrawableStateNode): void => {
    const all: DrawableTransition[] = [...(node.always ?? []).map((t) => ({ ...t, eventType: '' }))];
    for (const list of node.transitions.values()) all.push(...list);
    for (const t of all) {
      const label = triggerLabel(t, invokeSrc);
      const targets = t.target ?? [];
      if (targets.length === 0) {
        if (t.eventType !== '' && !t.eventType.startsWith('xstate.'))
          arrows.push(`${mermaidId(node)} --> ${mermaidId(node)} : ${label}`);
        continue;
      }
      for (const target of targets) arrows.push(`${mermaidId(node)} --> ${mermaidId(target)} : ${label}`);
    }
  };

  const draw = (node: DrawableStateNode, depth: number): void => {
    const pad = '  '.repeat(depth);
    const children = Object.values(node.states);
    const initial = node.initial?.target[0];
    if (initial !== undefined && children.length > 0) lines.push(`${pad}[*] --> ${mermaidId(initial)}`);
    for (const child of children) {
      const id = mermaidId(child);
      lines.push(`${pad}state "${clean(child.key)}" as ${id}`);
      if (Object.keys(child.states).length > 0) {
        lines.push(`${pad}state ${id} {`);
        draw(child, depth + 1);
        lines.push(`${pad}}`);
      }
      if (child.type === 'final') lines.push(`${pad}${id} --> [*]`);
      if (child.invoke.length > 0) {
        const names = child.invoke.map((i) => srcName(i.src)).join(', ');
        lines.push(`${pad}note right of ${id} : invokes ${clean(names)}`);
      }
    }
  };

  draw(machine.root, 1);
  const walk = (node: DrawableStateNode): void => {
    drawTransitions(node);
    for (const child of Object.values(node.states)) walk(child);
  };
  walk(machine.root);
  // Root-level transitions (handled in any state) start from the root: draw them from a marker.
  const rootArrows = arrows.filter((a) => a.startsWith(`${mermaidId(machine.root)} `));
  const rest = arrows.filter((a) => !a.startsWith(`${mermaidId(machine.root)} `));
  if (rootArrows.length > 0) {
    lines.push(`  state "any state" as ${mermaidId(machine.root)}`);
  }
  for (const a of [...rest, ...rootArrows]) lines.push(`  ${a}`);
  return `${lines.join('\n')}\n`;
}
