/**
 * The web client's API types checked against the server's OpenAPI document (docs/openapi.json,
 * generated from the Rust types; api-schema.gen.ts is generated from it by `npm run gen:api`).
 * Type-level only: `npm run typecheck` fails when a hand-written type drifts from the route it is
 * used with. For each answer: what the server sends is assignable to what the client expects, and
 * the client names no field (at any depth) the server does not have. For each request body: what
 * the client sends is assignable to what the server takes, naming no field the server refuses.
 */
import type { paths } from './api-schema.gen.ts';
import type { Api, NextRequest } from './api.ts';
import type { OwnerApi } from './credentials.ts';
import type { PreviewLayout, SpriteUpload } from './previews.ts';

type JsonOf<T> = T extends { content: { 'application/json': infer B } } ? B : never;
/** The JSON body a route answers with `status`. */
type Answer<P extends keyof paths, M extends keyof paths[P], S extends number> = paths[P][M] extends { responses: infer R }
  ? S extends keyof R
    ? JsonOf<R[S]>
    : never
  : never;
/** True when a route answers `status` (for answers without a body). */
type Responds<P extends keyof paths, M extends keyof paths[P], S extends number> = paths[P][M] extends { responses: infer R } ? (S extends keyof R ? true : false) : false;
/** The JSON body a route takes. */
type Body<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { requestBody?: infer B } ? JsonOf<NonNullable<B>> : never;
/** The query parameters a route takes. */
type Query<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

type AllTrue<T> = false extends T[keyof T] ? false : true;
/** True when every property `Hand` names, at any depth, is one `Gen` has. */
type NamesOnlyKnown<Hand, Gen> = Hand extends readonly (infer H)[]
  ? Gen extends readonly (infer G)[]
    ? NamesOnlyKnown<H, G>
    : false
  : Hand extends object
    ? [Exclude<keyof Hand, keyof Gen>] extends [never]
      ? AllTrue<{ [K in keyof Hand & keyof Gen]-?: NamesOnlyKnown<NonNullable<Hand[K]>, NonNullable<Gen[K]>> }>
      : false
    : true;
/** The server's answer `Gen` gives the client everything its type `Hand` reads. */
type ServerSends<Gen, Hand> = [Gen] extends [never] ? false : [Gen] extends [Hand] ? NamesOnlyKnown<Hand, Gen> : false;
/** The client's request `Hand` is a body the server's `Gen` accepts. */
type ClientSends<Hand, Gen> = [Gen] extends [never] ? false : [Hand] extends [Gen] ? NamesOnlyKnown<Hand, Gen> : false;
type Check<T extends true> = T;
type Not<T extends boolean> = T extends true ? false : true;

type Returns<F extends (...args: never[]) => unknown> = Awaited<ReturnType<F>>;
type Arg<F extends (...args: never[]) => unknown, N extends number> = Parameters<F>[N];

/** What `errorFrom` (api.ts, credentials.ts) reads from an error answer. */
interface ErrorRead {
  error?: string;
  message?: string;
}

export type ApiContract = [
  // uploader (api.ts)
  Check<ClientSends<Arg<Api['createSession'], 0>, Body<'/api/videos', 'post'>>>,
  Check<ServerSends<Answer<'/api/videos', 'post', 201>, Returns<Api['createSession']>>>,
  Check<ClientSends<{ release_leases: boolean }, Body<'/api/videos/{id}/init', 'post'>>>,
  Check<ServerSends<Answer<'/api/videos/{id}/init', 'post', 200>, Returns<Api['freshInitUploads']>>>,
  Check<ClientSends<NextRequest, Body<'/api/videos/{id}/next', 'post'>>>,
  Check<ServerSends<Answer<'/api/videos/{id}/next', 'post', 200>, Returns<Api['next']>>>,
  Check<ServerSends<Answer<'/api/videos/{id}/slots/{slot}/uploaded', 'post', 202>, Returns<Api['reportUploaded']>>>,
  Check<ClientSends<{ after: number; wait_ms: number; lease: number }, Query<'/api/videos/{id}/priority', 'get'>>>,
  Check<ServerSends<Answer<'/api/videos/{id}/priority', 'get', 200>, Returns<Api['priority']>>>,
  // viewers (api.ts)
  Check<ClientSends<Arg<Api['prioritize'], 1> & { viewer: string }, Body<'/api/videos/{id}/prioritize', 'post'>>>,
  Check<ServerSends<Answer<'/api/videos/{id}/prioritize', 'post', 200>, Returns<Api['prioritize']>>>,
  Check<ServerSends<Answer<'/api/videos/{id}/status', 'get', 200>, Returns<Api['status']>>>,
  Check<Responds<'/api/videos/{id}/watching', 'post', 204>>,
  // owners (credentials.ts)
  Check<ClientSends<Arg<OwnerApi['createSession'], 0>, Body<'/api/videos', 'post'>>>,
  Check<ServerSends<Answer<'/api/videos', 'post', 201>, Returns<OwnerApi['createSession']>>>,
  Check<ServerSends<Answer<'/api/me', 'get', 200>, Returns<OwnerApi['me']>>>,
  Check<ServerSends<Answer<'/api/me/videos', 'get', 200>, Returns<OwnerApi['videos']>>>,
  Check<ServerSends<Answer<'/api/me/videos/{id}', 'delete', 200>, Returns<OwnerApi['remove']>>>,
  Check<ClientSends<{ kept: boolean }, Body<'/api/me/videos/{id}/keep', 'post'>>>,
  Check<ServerSends<Answer<'/api/me/videos/{id}/keep', 'post', 200>, Returns<OwnerApi['keep']>>>,
  // previews (previews.ts)
  Check<ServerSends<Answer<'/api/videos/{id}/previews', 'get', 200>, PreviewLayout>>,
  Check<ClientSends<{ sprites: { index: number; size: number }[] }, Body<'/api/videos/{id}/previews', 'post'>>>,
  Check<ServerSends<Answer<'/api/videos/{id}/previews', 'post', 200>, { uploads: SpriteUpload[] }>>,
  Check<ServerSends<Answer<'/api/videos/{id}/previews/{sprite}/uploaded', 'post', 200>, { sprite: number; published: boolean }>>,
  // every error answer
  Check<ServerSends<Answer<'/api/videos', 'post', 400>, ErrorRead>>,
  // the checks can fail: a field the server does not send, a wrong type, a field it refuses
  Check<Not<ServerSends<{ a: number }, { a: number; b?: string }>>>,
  Check<Not<ServerSends<{ a: { b: number } }, { a: { b: number; c?: number } }>>>,
  Check<Not<ServerSends<{ a: string }, { a: number }>>>,
  Check<Not<ClientSends<{ a: number; b: number }, { a: number }>>>,
  Check<Not<ServerSends<never, { a: number }>>>,
];
