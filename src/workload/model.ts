import type { ExtractionMethod, NetworkType, TransactionStatus } from '../codec/records.ts';

// The shape of the synthetic banking world: which networks exist, how much and how large their traffic
// is, when it happens, and which extraction jobs pull it. Numbers are plausible orders of magnitude for a
// mid-size bank's view of these networks, not published statistics.

/** Hour-of-day and day-of-week weights in the network's local time; only ratios matter. */
export interface SeasonalityProfile {
  readonly name: string;
  /** 24 weights, index 0 = 00:00-01:00 local. */
  readonly hourOfDay: readonly number[];
  /** 7 weights, index 0 = Sunday. */
  readonly dayOfWeek: readonly number[];
}

/** Log-normal amount in major currency units, clamped to [min, max]. */
export interface AmountModel {
  /** exp(mu): half of the amounts are below it. */
  readonly median: number;
  /** Standard deviation of ln(amount). */
  readonly sigma: number;
  readonly min: number;
  readonly max: number;
}

export type StatusMix = Readonly<Record<TransactionStatus, number>>;

/** A categorical attribute drawn per record: the metadata map's keys, transaction types, currencies. */
export interface Categorical {
  readonly values: readonly string[];
  readonly weights: readonly number[];
}

export interface MetadataField extends Categorical {
  readonly key: string;
}

export interface JobProfile {
  readonly jobId: string;
  readonly jobName: string;
  readonly extractionMethod: ExtractionMethod;
  /** Minutes between runs; divides a day, and is a divisor of 60 or a multiple of 60, so cron can say it. */
  readonly intervalMinutes: number;
  /** Minutes after midnight UTC (modulo the interval) of the first run of the day. */
  readonly offsetMinutes: number;
  readonly durationMedianMs: number;
  /** Standard deviation of ln(duration). */
  readonly durationSigma: number;
  readonly failureProbability: number;
  /** Share of the network's transactions this job extracts; the shares of a network's jobs sum to 1. */
  readonly transactionShare: number;
  readonly bytesPerRecord: number;
}

export interface NetworkProfile {
  readonly networkId: string;
  readonly networkName: string;
  readonly networkType: NetworkType;
  readonly region: 'US' | 'EU' | 'UK' | 'GLOBAL';
  readonly countryCode: string | null;
  /** Primary settlement currency (the reference record's currency). */
  readonly currency: string;
  /** Currencies of individual transactions. */
  readonly currencies: Categorical;
  /** Fixed offset of the local time that drives seasonality; DST is ignored on purpose. */
  readonly utcOffsetHours: number;
  /** Share of all transactions over a full week; normalised across networks. */
  readonly relativeVolume: number;
  readonly amount: AmountModel;
  readonly statusMix: StatusMix;
  readonly transactionTypes: Categorical;
  readonly metadata: readonly MetadataField[];
  readonly seasonality: SeasonalityProfile;
  /** Participant institutions (BIC or ABA routing numbers); earlier entries are busier. */
  readonly banks: readonly string[];
  readonly jobs: readonly JobProfile[];
}

export interface WorkloadModel {
  readonly networks: readonly NetworkProfile[];
  readonly errorMessages: Readonly<Record<ExtractionMethod, readonly string[]>>;
}

const BUSINESS_DAYS: SeasonalityProfile = {
  name: 'business',
  hourOfDay: [
    0.05, 0.04, 0.04, 0.04, 0.05, 0.1, 0.2, 0.5, 1.2, 1.8, 2.0, 2.0, 1.6, 1.8, 1.9, 1.7, 1.4, 0.9, 0.5, 0.3,
    0.2, 0.15, 0.1, 0.07,
  ],
  dayOfWeek: [0.08, 1.05, 1.0, 1.0, 1.0, 1.1, 0.1],
};

// Fedwire and CHIPS settle on business days only; what little arrives at weekends is queued messages.
const HIGH_VALUE: SeasonalityProfile = {
  name: 'high-value',
  hourOfDay: [
    0.02, 0.02, 0.02, 0.02, 0.02, 0.03, 0.1, 0.4, 1.3, 2.0, 2.2, 2.2, 1.9, 2.0, 2.1, 1.9, 1.4, 0.8, 0.3, 0.1,
    0.05, 0.03, 0.02, 0.02,
  ],
  dayOfWeek: [0.02, 1.05, 1.0, 1.0, 1.0, 1.1, 0.02],
};

const CONSUMER: SeasonalityProfile = {
  name: 'consumer',
  hourOfDay: [
    0.25, 0.15, 0.1, 0.08, 0.08, 0.15, 0.35, 0.6, 0.85, 1.0, 1.1, 1.3, 1.5, 1.4, 1.25, 1.2, 1.3, 1.5, 1.6,
    1.5, 1.3, 1.0, 0.7, 0.45,
  ],
  dayOfWeek: [0.8, 0.95, 0.95, 1.0, 1.0, 1.15, 1.05],
};

// Instant-payment rails run 24/7, but most senders are businesses, so weekends are quieter.
const INSTANT: SeasonalityProfile = {
  name: 'instant',
  hourOfDay: [
    0.15, 0.1, 0.08, 0.07, 0.08, 0.15, 0.3, 0.6, 1.0, 1.3, 1.4, 1.4, 1.4, 1.35, 1.35, 1.3, 1.3, 1.3, 1.2, 1.0,
    0.8, 0.6, 0.4, 0.25,
  ],
  dayOfWeek: [0.5, 1.05, 1.0, 1.0, 1.0, 1.1, 0.6],
};

export const SEASONALITY_PROFILES: Readonly<Record<string, SeasonalityProfile>> = Object.freeze({
  business: BUSINESS_DAYS,
  'high-value': HIGH_VALUE,
  consumer: CONSUMER,
  instant: INSTANT,
});

/** ABA routing number with a valid check digit, built from an 8-digit prefix. */
export function abaRoutingNumber(prefix8: string): string {
  if (!/^\d{8}$/.test(prefix8)) throw new RangeError(`routing prefix must be 8 digits, got ${prefix8}`);
  const d = [...prefix8].map(Number) as number[];
  const sum = 3 * (d[0]! + d[3]! + d[6]!) + 7 * (d[1]! + d[4]! + d[7]!) + (d[2]! + d[5]!);
  return prefix8 + String((10 - (sum % 10)) % 10);
}

export function isValidAbaRoutingNumber(value: string): boolean {
  if (!/^\d{9}$/.test(value)) return false;
  const d = [...value].map(Number) as number[];
  return (3 * (d[0]! + d[3]! + d[6]!) + 7 * (d[1]! + d[4]! + d[7]!) + (d[2]! + d[5]! + d[8]!)) % 10 === 0;
}

// Fictional institutions: real-looking identifiers that belong to no real bank.
const BANK_CODES = [
  'TXSB',
  'HRBR',
  'LKSD',
  'MRDN',
  'CRST',
  'PNRB',
  'SMMT',
  'BYVW',
  'NRTH',
  'RVRB',
  'GRNF',
  'OKWD',
];

function usBanks(): string[] {
  // Fed district digits 01-12 as the first two digits, like real routing numbers.
  return BANK_CODES.map((_, i) =>
    abaRoutingNumber(`${String((i % 12) + 1).padStart(2, '0')}${String(700000 + i * 7919).slice(0, 6)}`),
  );
}

function bics(countries: readonly string[]): string[] {
  return BANK_CODES.map((code, i) => `${code}${countries[i % countries.length]}${i % 2 === 0 ? '2X' : '3M'}`);
}

function categorical(entries: Readonly<Record<string, number>>): Categorical {
  return { values: Object.keys(entries), weights: Object.values(entries) };
}

function field(key: string, entries: Readonly<Record<string, number>>): MetadataField {
  return { key, ...categorical(entries) };
}

interface JobSpec {
  id: string;
  name: string;
  method: ExtractionMethod;
  every: number;
  at?: number;
  medianMs: number;
  sigma: number;
  failure: number;
  share: number;
  bytesPerRecord: number;
}

function job(spec: JobSpec): JobProfile {
  return {
    jobId: spec.id,
    jobName: spec.name,
    extractionMethod: spec.method,
    intervalMinutes: spec.every,
    offsetMinutes: spec.at ?? 0,
    durationMedianMs: spec.medianMs,
    durationSigma: spec.sigma,
    failureProbability: spec.failure,
    transactionShare: spec.share,
    bytesPerRecord: spec.bytesPerRecord,
  };
}

const CARD_MCC = field('mcc', {
  '5411': 24,
  '5812': 14,
  '5541': 10,
  '5999': 9,
  '5311': 7,
  '5732': 5,
  '4121': 5,
  '5912': 5,
  '7011': 3,
  '4511': 2,
});

/**
 * The default synthetic world. A fresh object on every call, so callers may derive variants without
 * affecting anyone else.
 */
export function defaultModel(): WorkloadModel {
  const us = usBanks();
  const eu = bics(['DE', 'FR', 'NL', 'ES', 'IT', 'BE']);
  const uk = bics(['GB']);
  const global = bics(['US', 'GB', 'DE', 'FR', 'CH', 'JP', 'SG', 'CA']);
  const usd = categorical({ USD: 1 });
  const eur = categorical({ EUR: 1 });
  const gbp = categorical({ GBP: 1 });

  const networks: NetworkProfile[] = [
    {
      networkId: 'ACH',
      networkName: 'Nacha ACH Network',
      networkType: 'ACH',
      region: 'US',
      countryCode: 'US',
      currency: 'USD',
      currencies: usd,
      utcOffsetHours: -5,
      relativeVolume: 0.2,
      amount: { median: 450, sigma: 1.3, min: 0.01, max: 1_000_000 },
      statusMix: { completed: 0.93, pending: 0.05, failed: 0.012, reversed: 0.008 },
      transactionTypes: categorical({ credit: 0.55, debit: 0.45 }),
      metadata: [
        field('channel', { batch: 0.7, online: 0.2, mobile: 0.1 }),
        field('sec_code', { PPD: 0.5, CCD: 0.25, WEB: 0.2, TEL: 0.05 }),
      ],
      seasonality: BUSINESS_DAYS,
      banks: us,
      jobs: [
        job({
          id: 'ach-origination-sftp',
          name: 'ACH origination files (SFTP)',
          method: 'SFTP',
          every: 60,
          at: 5,
          medianMs: 95_000,
          sigma: 0.35,
          failure: 0.015,
          share: 0.6,
          bytesPerRecord: 180,
        }),
        job({
          id: 'ach-returns-api',
          name: 'ACH returns and NOC (API)',
          method: 'API',
          every: 30,
          medianMs: 14_000,
          sigma: 0.5,
          failure: 0.01,
          share: 0.25,
          bytesPerRecord: 650,
        }),
        job({
          id: 'ach-portal-scrape',
          name: 'ACH operator portal (RPA)',
          method: 'SCREEN_SCRAPE',
          every: 240,
          at: 30,
          medianMs: 380_000,
          sigma: 0.45,
          failure: 0.05,
          share: 0.15,
          bytesPerRecord: 2400,
        }),
      ],
    },
    {
      networkId: 'FEDWIRE',
      networkName: 'Fedwire Funds Service',
      networkType: 'FEDWIRE',
      region: 'US',
      countryCode: 'US',
      currency: 'USD',
      currencies: usd,
      utcOffsetHours: -5,
      relativeVolume: 0.02,
      amount: { median: 25_000, sigma: 1.8, min: 1, max: 500_000_000 },
      statusMix: { completed: 0.975, pending: 0.015, failed: 0.008, reversed: 0.002 },
      transactionTypes: categorical({ transfer: 0.8, credit: 0.2 }),
      metadata: [field('channel', { online: 0.6, batch: 0.3, branch: 0.1 })],
      seasonality: HIGH_VALUE,
      banks: us,
      jobs: [
        job({
          id: 'fedwire-api',
          name: 'Fedwire message feed (API)',
          method: 'API',
          every: 15,
          medianMs: 9_000,
          sigma: 0.4,
          failure: 0.008,
          share: 0.8,
          bytesPerRecord: 900,
        }),
        job({
          id: 'fedwire-eod-export',
          name: 'Fedwire end-of-day export',
          method: 'DB_EXPORT',
          every: 1440,
          at: 1380,
          medianMs: 600_000,
          sigma: 0.3,
          failure: 0.02,
          share: 0.2,
          bytesPerRecord: 220,
        }),
      ],
    },
    {
      networkId: 'CHIPS',
      networkName: 'Clearing House Interbank Payments System',
      networkType: 'CHIPS',
      region: 'US',
      countryCode: 'US',
      currency: 'USD',
      currencies: usd,
      utcOffsetHours: -5,
      relativeVolume: 0.02,
      amount: { median: 80_000, sigma: 1.9, min: 1, max: 900_000_000 },
      statusMix: { completed: 0.978, pending: 0.012, failed: 0.008, reversed: 0.002 },
      transactionTypes: categorical({ transfer: 1 }),
      metadata: [field('channel', { online: 0.7, batch: 0.3 })],
      seasonality: HIGH_VALUE,
      banks: us,
      jobs: [
        job({
          id: 'chips-sftp',
          name: 'CHIPS settlement files (SFTP)',
          method: 'SFTP',
          every: 60,
          medianMs: 70_000,
          sigma: 0.35,
          failure: 0.012,
          share: 0.7,
          bytesPerRecord: 200,
        }),
        job({
          id: 'chips-portal-scrape',
          name: 'CHIPS participant portal (RPA)',
          method: 'SCREEN_SCRAPE',
          every: 120,
          at: 15,
          medianMs: 300_000,
          sigma: 0.5,
          failure: 0.06,
          share: 0.3,
          bytesPerRecord: 2600,
        }),
      ],
    },
    {
      networkId: 'FEDNOW',
      networkName: 'FedNow Service',
      networkType: 'FEDNOW',
      region: 'US',
      countryCode: 'US',
      currency: 'USD',
      currencies: usd,
      utcOffsetHours: -5,
      relativeVolume: 0.01,
      amount: { median: 180, sigma: 1.2, min: 0.01, max: 500_000 },
      statusMix: { completed: 0.97, pending: 0.003, failed: 0.025, reversed: 0.002 },
      transactionTypes: categorical({ transfer: 0.7, payment: 0.3 }),
      metadata: [field('channel', { mobile: 0.55, online: 0.4, branch: 0.05 })],
      seasonality: INSTANT,
      banks: us,
      jobs: [
        job({
          id: 'fednow-api',
          name: 'FedNow payment feed (API)',
          method: 'API',
          every: 10,
          medianMs: 6_000,
          sigma: 0.4,
          failure: 0.006,
          share: 0.9,
          bytesPerRecord: 800,
        }),
        job({
          id: 'fednow-recon-export',
          name: 'FedNow reconciliation export',
          method: 'DB_EXPORT',
          every: 1440,
          at: 60,
          medianMs: 240_000,
          sigma: 0.3,
          failure: 0.02,
          share: 0.1,
          bytesPerRecord: 200,
        }),
      ],
    },
    {
      networkId: 'RTP',
      networkName: 'The Clearing House RTP',
      networkType: 'RTP',
      region: 'US',
      countryCode: 'US',
      currency: 'USD',
      currencies: usd,
      utcOffsetHours: -5,
      relativeVolume: 0.03,
      amount: { median: 220, sigma: 1.2, min: 0.01, max: 1_000_000 },
      statusMix: { completed: 0.97, pending: 0.003, failed: 0.025, reversed: 0.002 },
      transactionTypes: categorical({ transfer: 0.6, payment: 0.4 }),
      metadata: [field('channel', { mobile: 0.5, online: 0.45, branch: 0.05 })],
      seasonality: INSTANT,
      banks: us,
      jobs: [
        job({
          id: 'rtp-api',
          name: 'RTP payment feed (API)',
          method: 'API',
          every: 10,
          medianMs: 7_000,
          sigma: 0.4,
          failure: 0.008,
          share: 0.85,
          bytesPerRecord: 820,
        }),
        job({
          id: 'rtp-portal-scrape',
          name: 'RTP participant portal (RPA)',
          method: 'SCREEN_SCRAPE',
          every: 360,
          at: 45,
          medianMs: 420_000,
          sigma: 0.5,
          failure: 0.07,
          share: 0.15,
          bytesPerRecord: 2300,
        }),
      ],
    },
    {
      networkId: 'SWIFT',
      networkName: 'SWIFT FIN / gpi',
      networkType: 'SWIFT',
      region: 'GLOBAL',
      countryCode: null,
      currency: 'USD',
      currencies: categorical({ USD: 0.55, EUR: 0.25, GBP: 0.1, CHF: 0.05, CAD: 0.05 }),
      utcOffsetHours: 0,
      relativeVolume: 0.04,
      amount: { median: 12_000, sigma: 1.7, min: 1, max: 250_000_000 },
      statusMix: { completed: 0.95, pending: 0.035, failed: 0.01, reversed: 0.005 },
      transactionTypes: categorical({ transfer: 0.85, payment: 0.15 }),
      metadata: [
        field('channel', { online: 0.6, batch: 0.35, branch: 0.05 }),
        field('message_type', { MT103: 0.6, MT202: 0.15, 'pacs.008': 0.2, 'pacs.009': 0.05 }),
      ],
      seasonality: BUSINESS_DAYS,
      banks: global,
      jobs: [
        job({
          id: 'swift-mt940-sftp',
          name: 'SWIFT MT940 statements (SFTP)',
          method: 'SFTP',
          every: 60,
          at: 10,
          medianMs: 120_000,
          sigma: 0.4,
          failure: 0.02,
          share: 0.5,
          bytesPerRecord: 1400,
        }),
        job({
          id: 'swift-gpi-api',
          name: 'SWIFT gpi tracker (API)',
          method: 'API',
          every: 15,
          medianMs: 11_000,
          sigma: 0.45,
          failure: 0.01,
          share: 0.35,
          bytesPerRecord: 1100,
        }),
        job({
          id: 'swift-alliance-scrape',
          name: 'SWIFT Alliance Lite2 (RPA)',
          method: 'SCREEN_SCRAPE',
          every: 240,
          at: 20,
          medianMs: 500_000,
          sigma: 0.5,
          failure: 0.08,
          share: 0.15,
          bytesPerRecord: 3000,
        }),
      ],
    },
    {
      networkId: 'SEPA_SCT',
      networkName: 'SEPA Credit Transfer',
      networkType: 'SEPA',
      region: 'EU',
      countryCode: null,
      currency: 'EUR',
      currencies: eur,
      utcOffsetHours: 1,
      relativeVolume: 0.07,
      amount: { median: 300, sigma: 1.4, min: 0.01, max: 10_000_000 },
      statusMix: { completed: 0.955, pending: 0.03, failed: 0.01, reversed: 0.005 },
      transactionTypes: categorical({ transfer: 0.75, payment: 0.25 }),
      metadata: [field('channel', { batch: 0.5, online: 0.35, mobile: 0.15 })],
      seasonality: BUSINESS_DAYS,
      banks: eu,
      jobs: [
        job({
          id: 'sepa-sct-sftp',
          name: 'SEPA SCT bulk files (SFTP)',
          method: 'SFTP',
          every: 60,
          medianMs: 85_000,
          sigma: 0.35,
          failure: 0.015,
          share: 0.7,
          bytesPerRecord: 700,
        }),
        job({
          id: 'sepa-camt-api',
          name: 'SEPA camt.053 statements (API)',
          method: 'API',
          every: 30,
          at: 15,
          medianMs: 16_000,
          sigma: 0.45,
          failure: 0.012,
          share: 0.3,
          bytesPerRecord: 900,
        }),
      ],
    },
    {
      networkId: 'SEPA_INST',
      networkName: 'SEPA Instant Credit Transfer',
      networkType: 'SEPA',
      region: 'EU',
      countryCode: null,
      currency: 'EUR',
      currencies: eur,
      utcOffsetHours: 1,
      relativeVolume: 0.03,
      amount: { median: 90, sigma: 1.1, min: 0.01, max: 100_000 },
      statusMix: { completed: 0.972, pending: 0.002, failed: 0.024, reversed: 0.002 },
      transactionTypes: categorical({ transfer: 0.65, payment: 0.35 }),
      metadata: [field('channel', { mobile: 0.6, online: 0.35, branch: 0.05 })],
      seasonality: INSTANT,
      banks: eu,
      jobs: [
        job({
          id: 'sepa-inst-api',
          name: 'SEPA Inst payment feed (API)',
          method: 'API',
          every: 5,
          medianMs: 5_000,
          sigma: 0.4,
          failure: 0.01,
          share: 0.9,
          bytesPerRecord: 750,
        }),
        job({
          id: 'sepa-inst-recon-export',
          name: 'SEPA Inst reconciliation export',
          method: 'DB_EXPORT',
          every: 1440,
          at: 150,
          medianMs: 200_000,
          sigma: 0.3,
          failure: 0.03,
          share: 0.1,
          bytesPerRecord: 200,
        }),
      ],
    },
    {
      networkId: 'BACS',
      networkName: 'Bacs Payment Schemes',
      networkType: 'BACS',
      region: 'UK',
      countryCode: 'GB',
      currency: 'GBP',
      currencies: gbp,
      utcOffsetHours: 0,
      relativeVolume: 0.04,
      amount: { median: 600, sigma: 1.2, min: 0.01, max: 20_000_000 },
      statusMix: { completed: 0.94, pending: 0.045, failed: 0.01, reversed: 0.005 },
      transactionTypes: categorical({ credit: 0.6, debit: 0.4 }),
      metadata: [field('channel', { batch: 0.9, online: 0.1 })],
      seasonality: BUSINESS_DAYS,
      banks: uk,
      jobs: [
        job({
          id: 'bacs-sftp',
          name: 'Bacs input reports (SFTP)',
          method: 'SFTP',
          every: 240,
          at: 60,
          medianMs: 160_000,
          sigma: 0.35,
          failure: 0.02,
          share: 0.8,
          bytesPerRecord: 160,
        }),
        job({
          id: 'bacs-bureau-scrape',
          name: 'Bacs bureau portal (RPA)',
          method: 'SCREEN_SCRAPE',
          every: 1440,
          at: 420,
          medianMs: 900_000,
          sigma: 0.4,
          failure: 0.1,
          share: 0.2,
          bytesPerRecord: 2000,
        }),
      ],
    },
    {
      networkId: 'UK_FPS',
      networkName: 'UK Faster Payments',
      networkType: 'FPS',
      region: 'UK',
      countryCode: 'GB',
      currency: 'GBP',
      currencies: gbp,
      utcOffsetHours: 0,
      relativeVolume: 0.06,
      amount: { median: 75, sigma: 1.2, min: 0.01, max: 1_000_000 },
      statusMix: { completed: 0.972, pending: 0.003, failed: 0.022, reversed: 0.003 },
      transactionTypes: categorical({ transfer: 0.6, payment: 0.4 }),
      metadata: [field('channel', { mobile: 0.6, online: 0.35, branch: 0.05 })],
      seasonality: INSTANT,
      banks: uk,
      jobs: [
        job({
          id: 'fps-api',
          name: 'Faster Payments feed (API)',
          method: 'API',
          every: 10,
          medianMs: 6_000,
          sigma: 0.4,
          failure: 0.009,
          share: 0.9,
          bytesPerRecord: 750,
        }),
        job({
          id: 'fps-db-export',
          name: 'Faster Payments nightly export',
          method: 'DB_EXPORT',
          every: 1440,
          at: 180,
          medianMs: 350_000,
          sigma: 0.3,
          failure: 0.02,
          share: 0.1,
          bytesPerRecord: 200,
        }),
      ],
    },
    {
      networkId: 'VISA',
      networkName: 'Visa',
      networkType: 'CARD',
      region: 'GLOBAL',
      countryCode: null,
      currency: 'USD',
      currencies: categorical({ USD: 0.85, EUR: 0.08, GBP: 0.04, CAD: 0.03 }),
      utcOffsetHours: -5,
      relativeVolume: 0.3,
      amount: { median: 38, sigma: 1.0, min: 0.5, max: 50_000 },
      statusMix: { completed: 0.955, pending: 0.02, failed: 0.02, reversed: 0.005 },
      transactionTypes: categorical({ payment: 0.85, withdrawal: 0.09, refund: 0.06 }),
      metadata: [field('channel', { pos: 0.55, ecommerce: 0.37, atm: 0.08 }), CARD_MCC],
      seasonality: CONSUMER,
      banks: global,
      jobs: [
        job({
          id: 'visa-base2-sftp',
          name: 'Visa Base II clearing files (SFTP)',
          method: 'SFTP',
          every: 120,
          at: 40,
          medianMs: 240_000,
          sigma: 0.35,
          failure: 0.015,
          share: 0.7,
          bytesPerRecord: 250,
        }),
        job({
          id: 'visa-dispute-api',
          name: 'Visa disputes (API)',
          method: 'API',
          every: 30,
          medianMs: 18_000,
          sigma: 0.5,
          failure: 0.012,
          share: 0.3,
          bytesPerRecord: 900,
        }),
      ],
    },
    {
      networkId: 'MASTERCARD',
      networkName: 'Mastercard',
      networkType: 'CARD',
      region: 'GLOBAL',
      countryCode: null,
      currency: 'USD',
      currencies: categorical({ USD: 0.8, EUR: 0.12, GBP: 0.05, CAD: 0.03 }),
      utcOffsetHours: -5,
      relativeVolume: 0.18,
      amount: { median: 41, sigma: 1.0, min: 0.5, max: 50_000 },
      statusMix: { completed: 0.953, pending: 0.021, failed: 0.021, reversed: 0.005 },
      transactionTypes: categorical({ payment: 0.86, withdrawal: 0.08, refund: 0.06 }),
      metadata: [field('channel', { pos: 0.55, ecommerce: 0.38, atm: 0.07 }), CARD_MCC],
      seasonality: CONSUMER,
      banks: global,
      jobs: [
        job({
          id: 'mc-ipm-sftp',
          name: 'Mastercard IPM clearing files (SFTP)',
          method: 'SFTP',
          every: 120,
          at: 50,
          medianMs: 260_000,
          sigma: 0.35,
          failure: 0.017,
          share: 0.75,
          bytesPerRecord: 240,
        }),
        job({
          id: 'mc-connect-scrape',
          name: 'Mastercard Connect portal (RPA)',
          method: 'SCREEN_SCRAPE',
          every: 360,
          at: 90,
          medianMs: 620_000,
          sigma: 0.5,
          failure: 0.09,
          share: 0.25,
          bytesPerRecord: 2800,
        }),
      ],
    },
  ];

  return {
    networks,
    errorMessages: {
      API: [
        'HTTP 503 Service Unavailable from upstream API',
        'HTTP 429 Too Many Requests: rate limit exceeded',
        'OAuth token refresh failed: invalid_grant',
        'Request timed out after 30000 ms',
      ],
      SFTP: [
        'SFTP connection reset by peer',
        'Expected settlement file not found on remote host',
        'Host key verification failed',
        'Checksum mismatch on downloaded file',
      ],
      SCREEN_SCRAPE: [
        'Element not found: #transactions-table',
        'Navigation timeout of 60000 ms exceeded',
        'Login failed: MFA challenge not completed',
        'Session expired during pagination',
      ],
      DB_EXPORT: [
        'ORA-01555: snapshot too old',
        'Deadlock detected while exporting batch',
        'Connection pool exhausted after 30000 ms',
      ],
    },
  };
}

/** Cron expression (UTC, five fields) for a job that runs every `intervalMinutes` starting at `offsetMinutes`. */
export function cronFor(intervalMinutes: number, offsetMinutes: number): string {
  const problem = scheduleProblem(intervalMinutes, offsetMinutes);
  if (problem !== null) throw new RangeError(problem);
  if (intervalMinutes < 60) {
    return offsetMinutes === 0
      ? `*/${intervalMinutes} * * * *`
      : `${offsetMinutes}-59/${intervalMinutes} * * * *`;
  }
  const minute = offsetMinutes % 60;
  const hour = Math.floor(offsetMinutes / 60);
  const everyHours = intervalMinutes / 60;
  if (everyHours === 1) return `${minute} * * * *`;
  if (everyHours === 24) return `${minute} ${hour} * * *`;
  return hour === 0 ? `${minute} */${everyHours} * * *` : `${minute} ${hour}-23/${everyHours} * * *`;
}

function scheduleProblem(intervalMinutes: number, offsetMinutes: number): string | null {
  const cronExpressible =
    Number.isInteger(intervalMinutes) &&
    intervalMinutes > 0 &&
    1440 % intervalMinutes === 0 &&
    (60 % intervalMinutes === 0 || intervalMinutes % 60 === 0);
  if (!cronExpressible) {
    return `interval ${intervalMinutes} min must divide a day and be a divisor or a multiple of 60`;
  }
  if (!Number.isInteger(offsetMinutes) || offsetMinutes < 0 || offsetMinutes >= intervalMinutes) {
    return `offset ${offsetMinutes} min must be an integer in [0, ${intervalMinutes})`;
  }
  return null;
}

/** Every problem with a model, so a bad custom model fails once with the full list. */
export function validateModel(model: WorkloadModel): string[] {
  const problems: string[] = [];
  const networkIds = new Set<string>();
  const jobIds = new Set<string>();
  const checkCategorical = (where: string, c: Categorical): void => {
    if (c.values.length === 0 || c.values.length !== c.weights.length) {
      problems.push(`${where}: needs as many weights as values, and at least one`);
    } else if (!c.weights.every((w) => w >= 0 && Number.isFinite(w)) || !c.weights.some((w) => w > 0)) {
      problems.push(`${where}: weights must be finite, >= 0 and not all zero`);
    }
  };
  if (model.networks.length === 0) problems.push('model has no networks');
  for (const n of model.networks) {
    const at = `network ${n.networkId}`;
    if (networkIds.has(n.networkId)) problems.push(`${at}: duplicate network id`);
    networkIds.add(n.networkId);
    if (!/^[A-Z]{3}$/.test(n.currency))
      problems.push(`${at}: currency ${n.currency} is not an ISO 4217 code`);
    checkCategorical(`${at} currencies`, n.currencies);
    for (const c of n.currencies.values) {
      if (!/^[A-Z]{3}$/.test(c)) problems.push(`${at}: currency ${c} is not an ISO 4217 code`);
    }
    checkCategorical(`${at} transaction types`, n.transactionTypes);
    for (const m of n.metadata) checkCategorical(`${at} metadata ${m.key}`, m);
    if (!(n.relativeVolume > 0)) problems.push(`${at}: relativeVolume must be > 0`);
    const { median, sigma, min, max } = n.amount;
    if (!(median > 0 && sigma >= 0 && min >= 0.01 && max >= min && max < 1e13)) {
      problems.push(`${at}: amount needs median > 0, sigma >= 0, 0.01 <= min <= max < 1e13`);
    }
    const mix = Object.values(n.statusMix);
    if (!mix.every((w) => w >= 0) || !mix.some((w) => w > 0))
      problems.push(`${at}: status mix must be >= 0, not all 0`);
    const s = n.seasonality;
    if (s.hourOfDay.length !== 24 || s.dayOfWeek.length !== 7) {
      problems.push(`${at}: seasonality needs 24 hour and 7 day weights`);
    } else if (![...s.hourOfDay, ...s.dayOfWeek].every((w) => w > 0 && Number.isFinite(w))) {
      problems.push(`${at}: seasonality weights must be finite and > 0`);
    }
    if (!Number.isInteger(n.utcOffsetHours) || Math.abs(n.utcOffsetHours) > 14) {
      problems.push(`${at}: utcOffsetHours must be an integer in [-14, 14]`);
    }
    if (n.banks.length < 2) problems.push(`${at}: needs at least two banks`);
    if (n.jobs.length === 0) problems.push(`${at}: needs at least one job`);
    let shares = 0;
    for (const j of n.jobs) {
      const jat = `job ${j.jobId}`;
      if (jobIds.has(j.jobId)) problems.push(`${jat}: duplicate job id`);
      jobIds.add(j.jobId);
      const schedule = scheduleProblem(j.intervalMinutes, j.offsetMinutes);
      if (schedule !== null) problems.push(`${jat}: ${schedule}`);
      if (!(j.durationMedianMs > 0 && j.durationSigma >= 0))
        problems.push(`${jat}: duration needs median > 0, sigma >= 0`);
      if (!(j.failureProbability >= 0 && j.failureProbability <= 1))
        problems.push(`${jat}: failureProbability not in [0, 1]`);
      if (!(j.transactionShare > 0)) problems.push(`${jat}: transactionShare must be > 0`);
      if (!(j.bytesPerRecord > 0)) problems.push(`${jat}: bytesPerRecord must be > 0`);
      if ((model.errorMessages[j.extractionMethod] ?? []).length === 0) {
        problems.push(`${jat}: no error messages for extraction method ${j.extractionMethod}`);
      }
      shares += j.transactionShare;
    }
    if (n.jobs.length > 0 && Math.abs(shares - 1) > 1e-9)
      problems.push(`${at}: job transaction shares sum to ${shares}, not 1`);
  }
  return problems;
}
