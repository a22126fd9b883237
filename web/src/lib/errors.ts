export type MediaErrorCode =
  | 'empty'
  | 'not_mp4'
  | 'truncated'
  | 'corrupt'
  | 'fragmented'
  | 'no_tracks'
  | 'unsupported';

/** A problem with the chosen file: the message is meant for the user, as is. */
export class MediaFileError extends Error {
  constructor(
    readonly code: MediaErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MediaFileError';
  }
}
