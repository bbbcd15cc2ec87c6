/**
 * Atomic batches (src/engine/write-batch.ts): validated whole, appended as one run of records, one
 * commit group, and cut off whole by recovery when a crash tears them.
 */
import { SimDevice } from '../../src/engine/sim-device.js';
import { Store } from '../../src/engine/store.js';
import { TalosError } from '../../src/errors.js';
import { dump, TINY } from '../support/store.js';

const put = (key: string, value: string) => ({ type: 'put' as const, key, value });

describe('atomic batches', () => {
  it('a batch with a too-large key rejects whole and writes nothing', async () => {
    const store = await Store.open({ ...TINY, device: new SimDevice() });
    await store.put('before', '0');
    const batch = [put('a', '1'), put('k'.repeat(TINY.maxKeyBytes! + 1), '2'), put('b', '3')];
    await expect(store.batch(batch)).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' });
    await expect(
      store.batch([put('a', '1'), { type: 'nope' as 'put', key: 'x', value: 'y' }]),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const nextLsn = store.stats().nextLsn;
    expect([...(await dump(store)).keys()]).toEqual([Buffer.from('before').toString('hex')]);
    expect(await store.get('a')).toBeUndefined();
    // Nothing was appended: no lsn was taken.
    await store.batch([]);
    expect(store.stats().nextLsn).toBe(nextLsn);
    await store.close();
  });

  it('a batch larger than a log segment is BATCH_TOO_LARGE', async () => {
    const store = await Store.open({ ...TINY, device: new SimDevice() });
    const big = Array.from({ length: 10 }, (_, i) => put(`k${i}`, 'v'.repeat(500)));
    const err = await store.batch(big).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TalosError);
    expect((err as TalosError).code).toBe('BATCH_TOO_LARGE');
    expect(await store.get('k0')).toBeUndefined();
    await store.close();
  });

  it('applies puts and deletes in order, later ones winning, across a seal', async () => {
    const store = await Store.open({ ...TINY, device: new SimDevice(), syncPolicy: 'always' });
    for (let i = 0; i < 20; i++) {
      await store.batch([
        put(`k${i}`, 'x'.repeat(300)),
        put(`k${i}`, `v${i}`),
        { type: 'del', key: `k${i - 1}` },
      ]);
    }
    const rows = await store.scan();
    expect(rows.map((r) => [r.key.toString(), r.value.toString()])).toEqual([['k19', 'v19']]);
    expect(store.logSegments().length).toBeGreaterThan(1);
    await store.close();
  });

  it('binary keys and values round-trip; strings are UTF-8', async () => {
    const store = await Store.open({ ...TINY, device: new SimDevice() });
    const key = Uint8Array.from([0, 255, 1, 128]);
    await store.batch([
      { type: 'put', key, value: Uint8Array.from([9, 0, 9]) },
      { type: 'put', key: 'ключ', value: 'значение' },
    ]);
    expect(await store.get(Buffer.from(key))).toEqual(Buffer.from([9, 0, 9]));
    expect((await store.get(Buffer.from('ключ', 'utf8')))?.toString('utf8')).toBe('значение');
    expect(await store.has('ключ')).toBe(true);
    expect(await store.getMany(['ключ', 'missing', key])).toEqual([
      Buffer.from('значение'),
      undefined,
      Buffer.from([9, 0, 9]),
    ]);
    await store.close();
  });

  describe('a batch torn by a crash is wholly present or wholly absent after recovery', () => {
    const batch = Array.from({ length: 6 }, (_, i) => put(`batch-${i}`, `value-${i}-${'p'.repeat(60)}`));

    async function crashDuringTailWrite(seed: number, tearProbability: number): Promise<number> {
      const device = new SimDevice({ seed });
      const store = await Store.open({ ...TINY, device: device.attach() });
      await store.put('durable', 'yes');
      await store.sync();
      await store.batch(batch);
      // The tail write (the batch's records) is issued, then the power fails before its sync.
      const syncing = store.sync().catch(() => {});
      device.crash({ keepProbability: 1, tearProbability });
      await syncing;
      const recovered = await Store.open({ ...TINY, device: device.attach() });
      expect((await recovered.get('durable'))?.toString()).toBe('yes');
      const present = (await recovered.getMany(batch.map((b) => b.key))).filter((v) => v !== undefined);
      await recovered.close();
      return present.length;
    }

    it('torn anywhere: absent', async () => {
      for (let seed = 1; seed <= 40; seed++) expect(await crashDuringTailWrite(seed, 1)).toBe(0);
    });

    it('landed whole: present', async () => {
      for (let seed = 1; seed <= 5; seed++) expect(await crashDuringTailWrite(seed, 0)).toBe(batch.length);
    });
  });
});
