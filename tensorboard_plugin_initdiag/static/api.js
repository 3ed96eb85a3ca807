// The plugin's data routes. URLs are relative: the page's <base> is
// /data/plugin/keras_initdiag/ (also behind --path_prefix).

/**
 * GET a data route and decode its JSON.
 * @param {string} route E.g. 'runs'.
 * @param {!Object<string, string|number>=} params Query parameters.
 * @return {!Promise<!Object>}
 */
export async function getJson(route, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) query.set(name, String(value));
  const url = query.toString() ? `${route}?${query}` : route;
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new Error(`Could not reach TensorBoard (${route}): ${error.message}`);
  }
  const body = await response.text();
  if (!response.ok) {
    throw new Error(`${route} failed (HTTP ${response.status}): ${body.slice(0, 300)}`);
  }
  try {
    return JSON.parse(body);
  } catch (error) {
    throw new Error(`${route} returned invalid JSON: ${error.message}`);
  }
}

/**
 * Decode base64 little-endian float32 values.
 * @param {string} text
 * @return {!Float32Array}
 */
export function decodeFloat32(text) {
  let bytes;
  if (typeof Uint8Array.fromBase64 === 'function') {
    bytes = Uint8Array.fromBase64(text);
  } else {
    const binary = atob(text);
    bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  }
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** A number from the JSON encoding: null is NaN, "inf"/"-inf" are infinite. */
export function number(value) {
  if (value === null || value === undefined) return NaN;
  if (value === 'inf') return Infinity;
  if (value === '-inf') return -Infinity;
  return Number(value);
}
