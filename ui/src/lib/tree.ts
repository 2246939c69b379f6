// A session's events as a tree, built from each event's parent_id (the data plane returns
// them flat from POST /v1/events/export). Guarantees: every event appears exactly once; an
// event whose parent is missing (not stored yet, or another session's) becomes a root; a
// cycle of parent ids cannot loop (its members become roots where the cycle is cut);
// siblings and roots are ordered by start_time, then event_id (the server's order).

export interface TreeEvent {
  event_id: string;
  parent_id?: string | null;
  start_time?: number | null;
  end_time?: number | null;
  duration?: number | null;
}

export interface TreeNode<E extends TreeEvent> {
  event: E;
  children: TreeNode<E>[];
  depth: number;
}

function order<E extends TreeEvent>(a: TreeNode<E>, b: TreeNode<E>): number {
  const ta = a.event.start_time ?? Number.POSITIVE_INFINITY;
  const tb = b.event.start_time ?? Number.POSITIVE_INFINITY;
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.event.event_id < b.event.event_id ? -1 : a.event.event_id > b.event.event_id ? 1 : 0;
}

export function buildTree<E extends TreeEvent>(events: readonly E[]): TreeNode<E>[] {
  const nodes = new Map<string, TreeNode<E>>();
  for (const event of events) {
    if (!nodes.has(event.event_id)) nodes.set(event.event_id, { event, children: [], depth: 0 });
  }
  // A cycle of parent ids is cut at the first of its members reached: that one becomes a
  // root. One walk up per node, each node resolved once: linear in the number of events.
  const parentOf = (n: TreeNode<E>) => (n.event.parent_id ? nodes.get(n.event.parent_id) : undefined);
  const state = new Map<TreeNode<E>, 1 | 2>(); // 1: on the current walk, 2: resolved
  const cut = new Set<TreeNode<E>>();
  for (const node of nodes.values()) {
    const walk: TreeNode<E>[] = [];
    let current: TreeNode<E> | undefined = node;
    while (current !== undefined && !state.has(current)) {
      state.set(current, 1);
      walk.push(current);
      current = parentOf(current);
    }
    if (current !== undefined && state.get(current) === 1) cut.add(current);
    for (const n of walk) state.set(n, 2);
  }
  const roots: TreeNode<E>[] = [];
  for (const node of nodes.values()) {
    const parent = parentOf(node);
    if (parent === undefined || cut.has(node)) roots.push(node);
    else parent.children.push(node);
  }
  // Depths and order, iteratively (a 2,000-deep chain must not overflow the stack).
  roots.sort(order);
  const stack: TreeNode<E>[] = [...roots];
  for (const root of roots) root.depth = 0;
  while (stack.length > 0) {
    const node = stack.pop()!;
    node.children.sort(order);
    for (const child of node.children) {
      child.depth = node.depth + 1;
      stack.push(child);
    }
  }
  return roots;
}

/** The rows a tree view shows: depth-first, children of collapsed nodes left out. */
export function visibleRows<E extends TreeEvent>(roots: readonly TreeNode<E>[], collapsed: ReadonlySet<string>): TreeNode<E>[] {
  const rows: TreeNode<E>[] = [];
  const stack: TreeNode<E>[] = [...roots].reverse();
  while (stack.length > 0) {
    const node = stack.pop()!;
    rows.push(node);
    if (!collapsed.has(node.event.event_id)) {
      for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
    }
  }
  return rows;
}

/** Every node, depth-first (for counts and lookups). */
export function allNodes<E extends TreeEvent>(roots: readonly TreeNode<E>[]): TreeNode<E>[] {
  return visibleRows(roots, new Set());
}
