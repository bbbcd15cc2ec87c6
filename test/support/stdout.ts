/** What a CLI run writes to stdout, as lines (empty ones dropped), beside the run's value. */
export async function captured<T>(run: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  const chunks: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(chunk.toString());
    return true;
  });
  try {
    const value = await run();
    return {
      value,
      lines: chunks
        .join('')
        .split('\n')
        .filter((l) => l.length > 0),
    };
  } finally {
    spy.mockRestore();
  }
}
