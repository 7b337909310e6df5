"""The seed notebook's QSGD coder (shared/seeds/000_*), ported to Python 3 as a test fixture.

Only what Python 3 requires changed: integer division (`//`) where the Python 2 notebook relied on
`/` between ints, and `np.random` replaced by a passed-in generator. The notebook's biased
rounding (`dice > prob` rounds up with probability 1 - p) is kept on purpose: this is the other
side of the compatibility tests, not qcomm's coder.
"""

import numpy as np
import numpy.linalg as LA


def encode(v, rng, **kwargs):
    if isinstance(v, np.ndarray):
        w = v.flat[:]
    else:
        raise ValueError("Object passed to encode not ndarray or torch.Tensor")

    norm = LA.norm(v)

    quantization_level = kwargs['quantization_level']
    s = (1 << quantization_level) - 1
    shape = v.shape
    w = np.reshape(w, -1)
    num_int_each_64_bits = 64 // (2 + quantization_level)
    num_section = num_int_each_64_bits
    len_each_section = (w.shape[0] + num_section - 1) // num_section
    w = np.pad(w, (0, len_each_section * num_section - w.shape[0]), mode='constant')

    sign_array = np.sign(w)
    sign_array += 1
    sign_array = sign_array.astype('uint64')
    normalization_array = np.abs(w) / norm * s

    truncated_array = normalization_array.astype(int)
    prob_array = normalization_array - truncated_array
    dice_array = rng.random(len(prob_array))
    xi_array = truncated_array + (dice_array > prob_array)
    xi_array = xi_array.astype('uint64')

    xi_array = xi_array.reshape((num_section, len_each_section))
    sign_array = sign_array.reshape((num_section, len_each_section))

    neo_array = np.zeros(len_each_section)
    neo_array = neo_array.astype('uint64')

    for i in range(num_int_each_64_bits):
        xi = xi_array[i]
        sign = sign_array[i]
        neo_array <<= np.uint64(2 + quantization_level)
        neo_array = neo_array | (sign << np.uint64(quantization_level) | xi)

    code = {'neo': neo_array, 'norm': norm, 'quantization_level': quantization_level,
            'len_each_section': len_each_section, 'num_int_each_64_bits': num_int_each_64_bits,
            'shape': shape}

    return code


def decode(code):
    norm = code['norm']
    quantization_level = code['quantization_level']
    s = (1 << quantization_level) - 1

    real_size = np.prod(code['shape'])

    neo_array = code['neo'].astype('uint64')
    num_int_each_64_bits = code['num_int_each_64_bits']
    num_section = num_int_each_64_bits
    len_each_section = code['len_each_section']
    xi_array = np.ones((num_section, len_each_section))
    sign_array = np.ones((num_section, len_each_section))
    mask_for_xi = np.uint64((1 << quantization_level) - 1)
    mask_for_sign = np.uint64(3 << quantization_level)
    for i in range(num_int_each_64_bits)[::-1]:
        sign_array[i] = (neo_array & mask_for_sign) >> np.uint64(quantization_level)
        xi_array[i] = neo_array & mask_for_xi
        neo_array >>= np.uint64(2 + quantization_level)

    xi_array = xi_array.reshape(-1).astype('uint64')
    sign_array = sign_array.reshape(-1).astype('int8')
    sign_array -= 1
    v = sign_array * xi_array * norm / s

    v = v[:real_size]
    v = v.reshape(code['shape'])
    return v
