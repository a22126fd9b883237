/** hls.js's retry decision for fragments (its `shouldRetry`), apart so node tests can load it. */
import type { LoaderResponse, RetryConfig } from 'hls.js';

/**
 * hls.js retries 4xx never by default; a part not uploaded yet (404 once the server's hold of the
 * miss runs out, 403 from an S3 origin) must be asked for again, without limit.
 */
export function retryMissingParts(retryConfig: RetryConfig | null | undefined, retryCount: number, isTimeout: boolean, response: LoaderResponse | undefined, retry: boolean): boolean {
  const code = response?.code;
  if (code === 404 || code === 403) return true;
  return retry || (!!retryConfig && retryCount < retryConfig.maxNumRetry && isTimeout);
}
