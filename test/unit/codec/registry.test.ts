import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRegistryClient, registryReason, RegistryError } from '../../../src/codec/registry.ts';

interface Seen {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

/** A fetch that answers from a script and records what it was asked. */
function fakeFetch(answers: ((req: Seen) => Response | Error)[]) {
  const seen: Seen[] = [];
  const fn = (async (input: string | URL | Request, init?: RequestInit) => {
    const req: Seen = {
      url: String(input),
      method: init?.method ?? 'GET',
      headers: Object.fromEntries(Object.entries((init?.headers as Record<string, string>) ?? {})),
      body: init?.body ? JSON.parse(String(init.body)) : undefined,
    };
    seen.push(req);
    const next = answers.shift();
    if (!next) throw new Error('unexpected request');
    const answer = next(req);
    if (answer instanceof Error) throw answer;
    return answer;
  }) as typeof fetch;
  return { fn, seen };
}

const json = (status: number, body: unknown) => () =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const noSleep = async () => undefined;

describe('registry client', () => {
  it('sends basic auth, taken from the config or from the URL, and never puts credentials in the URL', async () => {
    const a = fakeFetch([json(200, [1])]);
    await createRegistryClient({
      url: 'http://reg:8081/apis/ccompat/v7/',
      username: 'u',
      password: 'p',
      fetch: a.fn,
    }).versions('s');
    assert.equal(a.seen[0]!.headers.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
    assert.equal(a.seen[0]!.url, 'http://reg:8081/apis/ccompat/v7/subjects/s/versions');

    const b = fakeFetch([json(200, [1])]);
    const client = createRegistryClient({ url: 'http://us%40er:s3cret@reg:8081/api', fetch: b.fn });
    await client.versions('s');
    assert.equal(b.seen[0]!.headers.authorization, `Basic ${Buffer.from('us@er:s3cret').toString('base64')}`);
    assert.equal(b.seen[0]!.url, 'http://reg:8081/api/subjects/s/versions');
    assert.doesNotMatch(client.url, /s3cret/);

    const c = fakeFetch([json(200, [1])]);
    await createRegistryClient({ url: 'http://reg:8081', fetch: c.fn }).versions('s');
    assert.equal(c.seen[0]!.headers.authorization, undefined);
  });

  it('uses the Confluent content type and paths, URL-encoding subjects', async () => {
    const f = fakeFetch([
      json(200, { compatibility: 'BACKWARD' }),
      json(200, { subject: 'a.b-value', version: 3, id: 9, schema: '"string"' }),
    ]);
    const client = createRegistryClient({ url: 'http://reg', fetch: f.fn });
    await client.setCompatibility('a.b-value', 'BACKWARD');
    assert.deepEqual(await client.lookup('a/b', '"string"'), {
      subject: 'a.b-value',
      version: 3,
      id: 9,
      schema: '"string"',
    });
    assert.equal(f.seen[0]!.method, 'PUT');
    assert.equal(f.seen[0]!.url, 'http://reg/config/a.b-value');
    assert.deepEqual(f.seen[0]!.body, { compatibility: 'BACKWARD' });
    assert.equal(f.seen[0]!.headers['content-type'], 'application/vnd.schemaregistry.v1+json');
    assert.equal(f.seen[1]!.url, 'http://reg/subjects/a%2Fb');
    assert.deepEqual(f.seen[1]!.body, { schema: '"string"' });
  });

  it('treats 404 as "absent" where absence is an answer', async () => {
    const f = fakeFetch([
      json(404, { error_code: 40401, message: 'Subject not found' }),
      json(404, { error_code: 40403, message: 'Schema not found' }),
      json(404, { error_code: 40401, message: 'Subject not found' }),
      json(404, { error_code: 40401, message: 'Subject not found' }),
      json(404, { error_code: 40401, message: 'Subject not found' }),
    ]);
    const client = createRegistryClient({ url: 'http://reg', fetch: f.fn });
    assert.equal(await client.getCompatibility('s'), null);
    assert.equal(await client.lookup('s', '"string"'), null);
    assert.deepEqual(await client.versions('s'), []);
    assert.equal(await client.latest('s'), null);
    assert.deepEqual(await client.checkCompatibility('s', '"string"'), { compatible: true, messages: [] });
  });

  it('surfaces the registry reason of a refused registration, without the Java class name', async () => {
    const f = fakeFetch([
      json(409, {
        error_code: 409,
        message:
          'io.apicurio.registry.rules.violation.RuleViolationException: Incompatible artifact: s [AVRO], num of incompatible diffs: {1}, list of diff types: [b at /fields/1]',
      }),
    ]);
    const err = await createRegistryClient({ url: 'http://reg', fetch: f.fn })
      .register('s', '"string"')
      .then(
        () => assert.fail('register should have been refused'),
        (e: unknown) => e,
      );
    assert.ok(err instanceof RegistryError);
    assert.equal(err.code, 'SCHEMA_INCOMPATIBLE');
    assert.equal(err.retriable, false);
    assert.equal(err.status, 409);
    assert.equal(
      err.reason,
      'Incompatible artifact: s [AVRO], num of incompatible diffs: {1}, list of diff types: [b at /fields/1]',
    );
  });

  it('passes on the messages of a verbose compatibility check (Confluent)', async () => {
    const f = fakeFetch([
      json(200, { is_compatible: false, messages: ['READER_FIELD_MISSING_DEFAULT_VALUE: b'] }),
    ]);
    const r = await createRegistryClient({ url: 'http://reg', fetch: f.fn }).checkCompatibility(
      's',
      '"string"',
    );
    assert.deepEqual(r, { compatible: false, messages: ['READER_FIELD_MISSING_DEFAULT_VALUE: b'] });
    assert.match(f.seen[0]!.url, /\/compatibility\/subjects\/s\/versions\/latest\?verbose=true$/);
  });

  it('classifies failures into codes with a retriable flag', async () => {
    const cases: [() => Response, string, boolean][] = [
      [json(401, { message: 'Unauthorized' }), 'REGISTRY_AUTH', false],
      [json(403, { message: 'Forbidden' }), 'REGISTRY_AUTH', false],
      [json(422, { error_code: 42201, message: 'Invalid schema' }), 'SCHEMA_INVALID', false],
      [json(400, { message: 'bad' }), 'REGISTRY_ERROR', false],
      [json(503, { message: 'down' }), 'REGISTRY_UNAVAILABLE', true],
    ];
    for (const [answer, code, retriable] of cases) {
      const f = fakeFetch([answer]);
      const client = createRegistryClient({ url: 'http://reg', fetch: f.fn, retries: 0 });
      await assert.rejects(client.register('s', '"string"'), (e: unknown) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.code, code);
        assert.equal(e.retriable, retriable);
        return true;
      });
    }
  });

  it('retries network errors and 5xx, then reports the registry unreachable', async () => {
    const refused = () => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    const ok = fakeFetch([refused, json(502, {}), json(200, [1, 2])]);
    assert.deepEqual(
      await createRegistryClient({ url: 'http://reg', fetch: ok.fn, retries: 2, sleep: noSleep }).versions(
        's',
      ),
      [1, 2],
    );
    assert.equal(ok.seen.length, 3);

    const down = fakeFetch([refused, refused, refused]);
    await assert.rejects(
      createRegistryClient({ url: 'http://reg', fetch: down.fn, retries: 2, sleep: noSleep }).versions('s'),
      (e: unknown) =>
        e instanceof RegistryError &&
        e.code === 'REGISTRY_UNAVAILABLE' &&
        e.retriable &&
        /ECONNREFUSED/.test(e.message),
    );
    assert.equal(down.seen.length, 3);
  });

  it('refuses answers it does not understand instead of guessing', async () => {
    const f = fakeFetch([json(200, { compatibilityLevel: 'SOMETIMES' }), json(200, { nope: true })]);
    const client = createRegistryClient({ url: 'http://reg', fetch: f.fn });
    await assert.rejects(
      client.getCompatibility('s'),
      (e: unknown) => e instanceof RegistryError && e.code === 'REGISTRY_ERROR',
    );
    await assert.rejects(
      client.register('s', '"string"'),
      (e: unknown) => e instanceof RegistryError && e.code === 'REGISTRY_ERROR',
    );
  });
});

describe('registryReason', () => {
  it('strips a leading Java exception class only', () => {
    assert.equal(registryReason('io.x.FooException: bad thing'), 'bad thing');
    assert.equal(
      registryReason('Schema being registered is incompatible'),
      'Schema being registered is incompatible',
    );
  });
});
