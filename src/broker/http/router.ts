/** Method + path → route, with `:param` segments. Small on purpose: a handful of endpoints. */
import type { HttpMethod, Route } from './types.js';

export type RouteMatch = { kind: 'found'; route: Route; params: Record<string, string> } | { kind: 'method'; allowed: HttpMethod[] } | { kind: 'none' };

interface Compiled {
  route: Route;
  segments: string[];
}

export class Router {
  readonly #routes: Compiled[] = [];

  add(route: Route): this {
    const segments = split(route.path);
    const clash = this.#routes.find((r) => r.route.method === route.method && r.route.path === route.path);
    if (clash) throw new Error(`route ${route.method} ${route.path} registered twice`);
    this.#routes.push({ route, segments });
    return this;
  }

  match(method: string, path: string): RouteMatch {
    const want = split(path);
    const allowed: HttpMethod[] = [];
    // HEAD is answered by the GET route; node drops the body.
    const effective = method === 'HEAD' ? 'GET' : method;
    for (const c of this.#routes) {
      const params = matchSegments(c.segments, want);
      if (!params) continue;
      if (c.route.method === effective) return { kind: 'found', route: c.route, params };
      allowed.push(c.route.method);
    }
    return allowed.length > 0 ? { kind: 'method', allowed } : { kind: 'none' };
  }
}

function split(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

function matchSegments(pattern: string[], path: string[]): Record<string, string> | undefined {
  if (pattern.length !== path.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string;
    const v = path[i] as string;
    if (p.startsWith(':')) {
      let decoded: string;
      try {
        decoded = decodeURIComponent(v);
      } catch {
        return undefined;
      }
      params[p.slice(1)] = decoded;
    } else if (p !== v) {
      return undefined;
    }
  }
  return params;
}
