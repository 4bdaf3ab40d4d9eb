/** The value masker lives in masking/ (Kubernetes objects and SSH output both use it); re-exported here. */
export { createValueMasker, DEFAULT_K8S_DETECTORS, type ValueMasker } from '../masking/value-mask.js';
