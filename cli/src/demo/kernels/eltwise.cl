
__kernel void eltwise(__global const DATA_TYPE *input0,
                      __global const DATA_TYPE *input1,
                      const float coeff0,
                      const float coeff1,
                      __global DATA_TYPE *output,
                      const int size) {
  const int i = get_global_id(0) << 2;
  if (i >= size) return;
  const DATA_TYPE4 a = vload4(0, input0 + i);
  const DATA_TYPE4 b = vload4(0, input1 + i);
  DATA_TYPE4 out;
#if ELTWISE_TYPE == 0
  out = mad((DATA_TYPE4)coeff0, a, (DATA_TYPE4)coeff1 * b);
#elif ELTWISE_TYPE == 1
  out = a - b;
#elif ELTWISE_TYPE == 2
  out = a * b;
#elif ELTWISE_TYPE == 3
  out = a / b;
#elif ELTWISE_TYPE == 4
  out = fmin(a, b);
#elif ELTWISE_TYPE == 5
  out = fmax(a, b);
#else
  out = (a - b) * (a - b);
#endif
  vstore4(out, 0, output + i);
}
