// A real OpenID provider (panva's OpenID-certified oidc-provider) for ogcflow's tests, bound to loopback only.
// Started by scripts/oidc.sh: node provider.mjs; settings from the environment:
//   OGCFLOW_OIDC_PORT       the port (default 0: a free one, chosen by the system)
//   OGCFLOW_OIDC_PORT_FILE  where to write the port once listening (scripts/oidc.sh reads it)
//   OGCFLOW_OIDC_TOKEN_TTL  lifetime of access tokens in seconds (default 300)
//   OGCFLOW_OIDC_SHORT_TTL  lifetime of the tokens of the client acme-short (default 5)
// Issuer: http://127.0.0.1:PORT. Access tokens are JWTs (typ at+jwt) for the resource indicator
// urn:ogcflow (the default one), audience "ogcflow", with the claims namespace (string) and roles (list).
// Test-only endpoints (loopback callers only):
//   POST /_test/rotate[?keep=0]  sign with new keys (RS256 and ES256) from now on; the JWKS lists the new keys
//                                first and, unless keep=0, the previous ones after them (old tokens still verify)
//   POST /_test/clients          register (or replace) a client_credentials client; JSON body:
//                                {"client_id", "client_secret"?, "namespace"?, "roles"?, "ttl"?, "alg"?}
//   GET  /_test/state            token lifetimes, the current signing kids, the retired kids, the client ids
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const TOKEN_TTL = Number(process.env.OGCFLOW_OIDC_TOKEN_TTL || 300);
const SHORT_TTL = Number(process.env.OGCFLOW_OIDC_SHORT_TTL || 5);
const AUDIENCE = 'ogcflow';
const DEFAULT_RESOURCE = `urn:${AUDIENCE}`;
const WEB_REDIRECT_URI = 'http://127.0.0.1:9/callback';

// client_credentials clients: client_id -> claims and token settings; secret "<client_id>-secret"
const machineClients = new Map(Object.entries({
  'acme-deployer': { namespace: 'acme', roles: ['deployer'] },
  'acme-executor': { namespace: 'acme', roles: ['executor'] },
  'acme-reader': { namespace: 'acme', roles: ['reader'] },
  'beta-executor': { namespace: 'beta', roles: ['executor'] },
  'platform-admin': { namespace: 'admin', roles: ['admin'] },
  'acme-es256': { namespace: 'acme', roles: ['executor'], alg: 'ES256' },
  'acme-short': { namespace: 'acme', roles: ['executor'], ttl: SHORT_TTL },
}));

// users of the authorization code flow (client ogcflow-web); password "<username>-password"
const users = new Map(Object.entries({
  alice: { namespace: 'acme', roles: ['executor'], name: 'Alice' },
}));

// ---- signing keys ----------------------------------------------------------------------------------------
let generation = 0;
function newKeys() {
  generation += 1;
  const stamp = `${Date.now().toString(36)}-${generation}`;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    RS256: { ...rsa, kid: `rs256-${stamp}`, alg: 'RS256', use: 'sig' },
    ES256: { ...ec, kid: `es256-${stamp}`, alg: 'ES256', use: 'sig' },
  };
}
let current = newKeys(); // signing keys, by alg
let retired = []; // previous keys, still published in the JWKS (verification only)

// ---- provider configuration ------------------------------------------------------------------------------
const cookieKeys = [randomBytes(32).toString('hex')];

function tokenClaims(token) {
  if (token.accountId) {
    const user = users.get(token.accountId);
    return user ? { namespace: user.namespace, roles: [...user.roles] } : {};
  }
  const client = machineClients.get(token.clientId);
  if (!client) return {};
  const claims = {};
  if (client.namespace !== undefined) claims.namespace = client.namespace;
  if (client.roles !== undefined) claims.roles = [...client.roles];
  return claims;
}

function audienceOf(resource) {
  // urn:NAME -> NAME (so the default resource urn:ogcflow gives the audience "ogcflow"), else the URI itself
  const m = /^urn:([^:]+)$/.exec(resource);
  return m ? m[1] : resource;
}

function configuration() {
  const clients = [...machineClients.entries()].map(([clientId, c]) => ({
    client_id: clientId,
    client_secret: c.secret || `${clientId}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }));
  clients.push({
    client_id: 'ogcflow-web',
    application_type: 'web',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [WEB_REDIRECT_URI],
  });
  const ttl = (ctx, token) => token.resourceServer?.accessTokenTTL || TOKEN_TTL;
  return {
    clients,
    jwks: { keys: [current.RS256, current.ES256, ...retired] },
    cookies: {
      keys: cookieKeys,
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    scopes: ['openid', 'offline_access'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      ogcflow: ['namespace', 'roles'],
    },
    async findAccount(ctx, id) {
      const user = users.get(id);
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id, name: user.name, preferred_username: id, namespace: user.namespace, roles: [...user.roles],
          };
        },
      };
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => (oneOf ? oneOf[0] : DEFAULT_RESOURCE),
        useGrantedResource: async () => true,
        async getResourceServerInfo(ctx, resource, client) {
          const settings = machineClients.get(client?.clientId) || {};
          const alg = settings.alg || 'RS256';
          return {
            audience: audienceOf(resource),
            scope: 'ogcflow:api',
            accessTokenFormat: 'jwt',
            accessTokenTTL: settings.ttl || TOKEN_TTL,
            jwt: { sign: { alg, kid: current[alg].kid } },
          };
        },
      },
    },
    formats: {
      customizers: {
        async jwt(ctx, token, jwt) {
          Object.assign(jwt.payload, tokenClaims(token));
          jwt.payload.nbf = jwt.payload.iat;
        },
      },
    },
    pkce: { methods: ['S256'], required: () => true },
    ttl: {
      AccessToken: ttl,
      ClientCredentials: ttl,
      AuthorizationCode: 60,
      IdToken: TOKEN_TTL,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
}

let provider;
let handler;
let issuer;
function build() {
  // a new Provider instance (same issuer, clients and cookie keys; the in-memory store is shared by instances)
  const next = new Provider(issuer, configuration());
  next.on('server_error', (ctx, err) => console.error('server_error', err));
  [provider, handler] = [next, next.callback()];
}

// ---- login and consent pages (plain HTML forms a test client can post) ---------------------------------------
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>`
    + `<body><h1>${esc(title)}</h1>${body}</body></html>`);
}

function loginForm(res, uid, error) {
  page(res, error ? 401 : 200, 'Sign in', `${error ? `<p class="error">${esc(error)}</p>` : ''}`
    + `<form method="post" action="/interaction/${esc(uid)}/login">`
    + '<input type="hidden" name="prompt" value="login">'
    + '<label>Username <input name="username" autocomplete="username"></label>'
    + '<label>Password <input name="password" type="password" autocomplete="current-password"></label>'
    + '<button type="submit">Sign in</button></form>');
}

function consentForm(res, uid, details) {
  page(res, 200, 'Authorize', `<p>${esc(details.params.client_id)} asks for: ${esc(details.params.scope || '')}</p>`
    + `<form method="post" action="/interaction/${esc(uid)}/confirm">`
    + '<input type="hidden" name="prompt" value="consent">'
    + '<button type="submit">Allow</button></form>');
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

async function interaction(req, res, path) {
  const [, , uid, action] = path.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt } = details;
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return loginForm(res, uid);
    return consentForm(res, uid, details);
  }
  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const form = await readForm(req);
    const username = form.get('username') || '';
    if (!users.has(username) || form.get('password') !== `${username}-password`) {
      return loginForm(res, uid, 'Invalid username or password');
    }
    return provider.interactionFinished(req, res, { login: { accountId: username } },
      { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    await readForm(req);
    const { params, session: { accountId } } = details;
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } },
      { mergeWithLastSubmission: true });
  }
  return page(res, 400, 'Bad request', `<p>unexpected ${esc(req.method)} for prompt ${esc(prompt.name)}</p>`);
}

// ---- test-only endpoints ------------------------------------------------------------------------------------
function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}

function state() {
  return {
    issuer,
    token_ttl: TOKEN_TTL,
    short_ttl: SHORT_TTL,
    signing_kids: { RS256: current.RS256.kid, ES256: current.ES256.kid },
    retired_kids: retired.map((k) => k.kid),
    clients: [...machineClients.keys(), 'ogcflow-web'],
  };
}

async function testEndpoint(req, res, url) {
  if (url.pathname === '/_test/state' && req.method === 'GET') return json(res, 200, state());
  if (url.pathname === '/_test/rotate' && req.method === 'POST') {
    const keep = !['0', 'false', 'no'].includes(url.searchParams.get('keep') || '');
    const previous = current;
    current = newKeys();
    retired = keep ? [previous.RS256, previous.ES256, ...retired] : [];
    build();
    console.log(`rotated: signing with ${current.RS256.kid} / ${current.ES256.kid}, retired: ${retired.length}`);
    return json(res, 200, state());
  }
  if (url.pathname === '/_test/clients' && req.method === 'POST') {
    const body = await readJson(req);
    if (typeof body.client_id !== 'string' || !/^[A-Za-z0-9._-]+$/.test(body.client_id)
        || body.client_id === 'ogcflow-web') {
      return json(res, 400, { error: 'client_id must be a new name of letters, digits, . _ -' });
    }
    if (body.alg != null && !['RS256', 'ES256'].includes(body.alg)) {
      return json(res, 400, { error: 'alg must be RS256 or ES256' });
    }
    const settings = {};
    for (const name of ['namespace', 'roles', 'ttl', 'alg']) {
      if (body[name] !== undefined && body[name] !== null) settings[name] = body[name];
    }
    if (body.client_secret) settings.secret = String(body.client_secret);
    machineClients.set(body.client_id, settings);
    build();
    return json(res, 201, { client_id: body.client_id, client_secret: settings.secret || `${body.client_id}-secret` });
  }
  return json(res, 404, { error: 'not found' });
}

// ---- server -------------------------------------------------------------------------------------------------
const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

const server = createServer(async (req, res) => {
  res.on('finish', () => console.log(`${req.method} ${req.url} ${res.statusCode}`));
  try {
    if (!LOOPBACK.has(req.socket.remoteAddress)) return json(res, 403, { error: 'loopback only' });
    const url = new URL(req.url, issuer);
    if (url.pathname.startsWith('/_test/')) return await testEndpoint(req, res, url);
    if (/^\/interaction\/[^/]+(\/(login|confirm))?$/.test(url.pathname)) {
      return await interaction(req, res, url.pathname);
    }
    return handler(req, res);
  } catch (err) {
    const status = err.statusCode || err.status || 500;
    if (status >= 500) console.error(err);
    if (!res.headersSent) {
      return json(res, status, { error: err.error || 'server_error', error_description: err.error_description || String(err.message || err) });
    }
    return res.end();
  }
});

server.listen(Number(process.env.OGCFLOW_OIDC_PORT || 0), HOST, () => {
  const { port } = server.address();
  issuer = `http://${HOST}:${port}`;
  build();
  if (process.env.OGCFLOW_OIDC_PORT_FILE) writeFileSync(process.env.OGCFLOW_OIDC_PORT_FILE, `${port}\n`);
  console.log(`oidc-provider listening on ${issuer} (node ${process.version})`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
