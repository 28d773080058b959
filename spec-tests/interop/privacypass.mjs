// Cloudflare's Privacy Pass library (@cloudflare/privacypass-ts) against Virga's samples.
//
//   node privacypass.mjs redeem ISSUER_URL ORIGIN_URL
//     Reads the issuer directory, gets the origin's challenge, requests a token from the
//     issuer, finalizes it, and redeems it at the origin twice. Prints JSON:
//     {"first": status, "second": status, "body": first body}.
//   node privacypass.mjs mint ISSUER_NAME ORIGIN_INFO
//     Makes its own issuer key and a token for the challenge an origin with these settings
//     sends (no redemption context). Prints JSON: {"token_key": base64url SPKI,
//     "authorization": header value}.
import { webcrypto } from 'node:crypto';

// Node 18 (Debian 12) has WebCrypto but not yet as a global; the library expects the global.
globalThis.crypto ??= webcrypto;
const { TOKEN_TYPES, TokenChallenge, WWWAuthenticateHeader, AuthorizationHeader, publicVerif } =
  await import('@cloudflare/privacypass-ts');

const { BlindRSAMode, Client, Issuer, TokenResponse, getPublicKeyBytes } = publicVerif;

function b64url(bytes) {
  return Buffer.from(bytes).toString('base64url');
}

async function redeem(issuerUrl, originUrl) {
  const directory = await (
    await fetch(new URL('/.well-known/private-token-issuer-directory', issuerUrl))
  ).json();
  const tokenKey = Buffer.from(directory['token-keys'][0]['token-key'], 'base64url');
  const challenged = await fetch(originUrl);
  if (challenged.status !== 401) throw new Error(`origin answered ${challenged.status}, not 401`);
  const [www] = WWWAuthenticateHeader.parse(challenged.headers.get('www-authenticate'));
  if (b64url(www.tokenKey) !== b64url(tokenKey)) throw new Error('origin and directory keys differ');
  const client = new Client(BlindRSAMode.PSS);
  const request = await client.createTokenRequest(www.challenge, new Uint8Array(tokenKey));
  const issued = await fetch(new URL(directory['issuer-request-uri'], issuerUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/private-token-request' },
    body: request.serialize(),
  });
  if (issued.status !== 200) throw new Error(`issuer answered ${issued.status}: ${await issued.text()}`);
  const response = TokenResponse.deserialize(new Uint8Array(await issued.arrayBuffer()));
  const token = await client.finalize(response);
  const authorization = new AuthorizationHeader(token).toString();
  const first = await fetch(originUrl, { headers: { authorization } });
  const body = await first.text();
  const second = await fetch(originUrl, { headers: { authorization } });
  return { first: first.status, second: second.status, body };
}

async function mint(issuerName, originInfo) {
  const mode = BlindRSAMode.PSS;
  const { privateKey, publicKey } = await Issuer.generateKey(mode, {
    modulusLength: 2048,
    publicExponent: Uint8Array.from([1, 0, 1]),
  });
  const issuer = new Issuer(mode, issuerName, privateKey, publicKey);
  const tokenKey = await getPublicKeyBytes(publicKey);
  const challenge = new TokenChallenge(
    TOKEN_TYPES.BLIND_RSA.value,
    issuerName,
    new Uint8Array(),
    originInfo ? [originInfo] : undefined,
  );
  const client = new Client(mode);
  const request = await client.createTokenRequest(challenge, tokenKey);
  const token = await client.finalize(await issuer.issue(request));
  if (!(await issuer.verify(token))) throw new Error('the library rejects its own token');
  return { token_key: b64url(tokenKey), authorization: new AuthorizationHeader(token).toString() };
}

const [mode, a, b] = process.argv.slice(2);
const result = mode === 'redeem' ? await redeem(a, b) : await mint(a, b);
console.log(JSON.stringify(result));
