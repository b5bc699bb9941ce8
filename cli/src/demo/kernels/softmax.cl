
__kernel void softmax(__global const DATA_TYPE *input,   /* [rows, classes] */
                      __global DATA_TYPE *output,
                      const int classes,
                      __local float *scratch) {
  const int row = get_group_id(0);
  const int lid = get_local_id(0);
  const int lsize = get_local_size(0);
  __global const DATA_TYPE *in = input + row * classes;
  __global DATA_TYPE *out = output + row * classes;
  float m = -MAXFLOAT;
  for (int i = lid; i < classes; i += lsize) m = fmax(m, in[i]);
  scratch[lid] = m;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = lsize >> 1; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  m = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  float sum = 0;
  for (int i = lid; i < classes; i += lsize) sum += exp(in[i] - m);
  scratch[lid] = sum;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = lsize >> 1; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float inv = 1.0f / scratch[0];
  for (int i = lid; i < classes; i += lsize) out[i] = exp(in[i] - m) * inv;
}
