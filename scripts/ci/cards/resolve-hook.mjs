// Lets node load @rocket.chat/rest-typings' ESM build, whose imports name
// neither the `.js` nor the `index.js` (it is built for bundlers): a
// specifier that does not resolve is retried with those, nothing else.
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    for (const s of [`${specifier}.js`, `${specifier}/index.js`]) {
      try {
        return await next(s, context);
      } catch {
        // try the next spelling
      }
    }
    throw err;
  }
}
