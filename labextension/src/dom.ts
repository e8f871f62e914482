/** A tiny hyperscript for plain DOM (the panel is plain DOM inside Lumino widgets). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: { [key: string]: string | boolean | undefined | ((ev: any) => void) } = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) {
      continue;
    }
    if (typeof v === 'function') {
      (node as any)[k] = v;
    } else if (k === 'class') {
      node.className = v as string;
    } else if (v === true) {
      node.setAttribute(k, '');
    } else {
      node.setAttribute(k, v);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child);
    }
  }
  return node;
}
