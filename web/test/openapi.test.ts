/**
 * The API's OpenAPI document (docs/openapi.json, written from the Rust types; the Rust test
 * functions/service/tests/openapi.rs keeps it equal to what the server serves) is a valid
 * OpenAPI 3.1 document, and src/lib/api-schema.gen.ts (which src/lib/api-contract.ts checks the
 * client's types against) is what openapi-typescript makes of it now.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import openapiTS, { type OpenAPI3 } from 'openapi-typescript';

const docUrl = new URL('../../docs/openapi.json', import.meta.url);
const generatedUrl = new URL('../src/lib/api-schema.gen.ts', import.meta.url);
const readDoc = (): Record<string, unknown> => JSON.parse(readFileSync(docUrl, 'utf8')) as Record<string, unknown>;

test('the OpenAPI document validates against the OpenAPI 3.1 schema', async () => {
  const validator = new Validator();
  const result = await validator.validate(readDoc());
  assert.equal(validator.version, '3.1');
  assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
});

test('the validator refuses a broken copy of the document', async () => {
  const doc = readDoc();
  const paths = doc.paths as Record<string, Record<string, { responses: unknown }>>;
  paths['/api/health']!.get!.responses = { ok: { description: 'not a status code' } };
  const result = await new Validator().validate(doc);
  assert.equal(result.valid, false);
});

test('api-schema.gen.ts is generated from the current document (npm run gen:api)', async () => {
  const fresh = await openapiTS(readDoc() as unknown as OpenAPI3);
  assert.ok(fresh.includes('"/api/videos/{id}/next"'), 'the generator saw the routes');
  const committed = readFileSync(generatedUrl, 'utf8');
  assert.ok(committed === fresh, 'src/lib/api-schema.gen.ts is stale: run `cd web && npm run gen:api` and commit it');
});
